//! Text from callers, plugins and peers, cut to a size before it is kept or shown.

/// `text` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
pub(crate) fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn cuts_on_a_character_boundary_and_marks_the_cut() {
        assert_eq!(clip("short".to_owned(), 10), "short");
        assert_eq!(clip("abcdef".to_owned(), 3), "abc…");
        // 'é' is two bytes: a cut inside it moves back before it.
        assert_eq!(clip("aé".to_owned(), 2), "a…");
    }
}
