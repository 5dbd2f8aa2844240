//! Text from callers, plugins and peers, cut to a size before it is kept or shown.

/// `text` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
pub(crate) fn clip(mut text: String, max: usize) -> String {
    if let Some(end) = cut_at(&text, max) {
        text.truncate(end);
        text.push('…');
    }
    text
}

/// [`clip`] of `text`, pushed onto the end of `out` (no copy of `text` made first).
pub(crate) fn push_clipped(out: &mut String, text: &str, max: usize) {
    match cut_at(text, max) {
        None => out.push_str(text),
        Some(end) => {
            out.push_str(&text[..end]);
            out.push('…');
        }
    }
}

/// Where `text` longer than `max` bytes is cut: at most `max`, on a character boundary.
fn cut_at(text: &str, max: usize) -> Option<usize> {
    let mut end = max;
    if text.len() <= end {
        return None;
    }
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::{clip, push_clipped};

    #[test]
    fn cuts_on_a_character_boundary_and_marks_the_cut() {
        assert_eq!(clip("short".to_owned(), 10), "short");
        assert_eq!(clip("abcdef".to_owned(), 3), "abc…");
        // 'é' is two bytes: a cut inside it moves back before it.
        assert_eq!(clip("aé".to_owned(), 2), "a…");
        let mut out = "x:".to_owned();
        push_clipped(&mut out, "aé", 2);
        assert_eq!(out, "x:a…");
    }
}
