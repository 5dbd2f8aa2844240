/* text-stats: counts in a text, written in C with the fedmcp C SDK (sdk/c). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fedmcp.h"

typedef struct {
    char *word;
    size_t count;
} tally;

static bool word_byte(unsigned char c) { return isalnum(c) || c >= 0x80 || c == '\''; }

static int by_count(const void *a, const void *b) {
    const tally *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return strcmp(x->word, y->word);
}

static int text_stats(const fedmcp_args *args, fedmcp_result *result) {
    const char *text = fedmcp_arg_string(args, "text");
    double top = fedmcp_arg_number(args, "top", 3);
    if (top < 0 || top > 100) return fedmcp_invalid_params(result, "top must be between 0 and 100");

    size_t characters = 0, lines = *text ? 1 : 0, words = 0, distinct = 0;
    tally *tallies = NULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p & 0xC0) != 0x80) characters++; /* count code points, not UTF-8 continuation bytes */
        if (*p == '\n' && p[1]) lines++;
    }
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        while (*p && !word_byte(*p)) p++;
        const unsigned char *start = p;
        while (*p && word_byte(*p)) p++;
        if (p == start) break;
        words++;
        size_t len = (size_t)(p - start);
        char *word = malloc(len + 1);
        if (!word) return fedmcp_internal_error(result, "out of memory");
        for (size_t i = 0; i < len; i++) word[i] = (char)tolower(start[i]);
        word[len] = '\0';
        size_t i = 0;
        while (i < distinct && strcmp(tallies[i].word, word) != 0) i++;
        if (i < distinct) {
            tallies[i].count++;
            free(word);
            continue;
        }
        tally *grown = realloc(tallies, (distinct + 1) * sizeof *grown);
        if (!grown) { free(word); return fedmcp_internal_error(result, "out of memory"); }
        tallies = grown;
        tallies[distinct++] = (tally){ word, 1 };
    }
    fedmcp_text(result, "words: %zu\nlines: %zu\ncharacters: %zu\ndistinct words: %zu", words, lines, characters,
                distinct);
    if (distinct > 0 && top >= 1) {
        qsort(tallies, distinct, sizeof *tallies, by_count);
        size_t shown = (size_t)top < distinct ? (size_t)top : distinct;
        for (size_t i = 0; i < shown; i++) fedmcp_text(result, "%s: %zu", tallies[i].word, tallies[i].count);
    }
    for (size_t i = 0; i < distinct; i++) free(tallies[i].word);
    free(tallies);
    return 0;
}

static const fedmcp_param text_stats_params[] = {
    { "text", FEDMCP_STRING, true, "The text to count in" },
    { "top", FEDMCP_INTEGER, false, "How many of the most frequent words to list (default 3)" },
};

const fedmcp_tool fedmcp_tools[] = {
    { "text_stats", "Count the words, lines and characters of a text, and list its most frequent words",
      text_stats_params, 2, text_stats },
};
const size_t fedmcp_tool_count = 1;
