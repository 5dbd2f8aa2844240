/* Native tests of the C SDK's JSON reader: `cc -o json_test json_test.c ../json.c && ./json_test`
 * (run by `cargo xtask test`). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../json.h"

static json_object parse_ok(const char *text) {
    json_object object;
    const char *error = NULL;
    if (!json_parse_object(text, strlen(text), &object, &error)) {
        fprintf(stderr, "refused %s: %s\n", text, error);
        assert(0);
    }
    return object;
}

static void parse_refused(const char *text) {
    json_object object;
    const char *error = NULL;
    if (json_parse_object(text, strlen(text), &object, &error)) {
        fprintf(stderr, "accepted %s\n", text);
        assert(0);
    }
    assert(error != NULL);
}

int main(void) {
    json_object o = parse_ok("{\"text\": \"a\\\"b\\n\\u00e9\\ud83d\\ude00\", \"n\": -2.5e1, \"i\": 7, \"b\": true, "
                             "\"z\": null, \"nested\": {\"x\": [1, {\"y\": \"}\"}]}}");
    assert(o.count == 6);
    assert(strcmp(o.members[0].name, "text") == 0 && o.members[0].kind == JSON_STRING);
    assert(strcmp(o.members[0].string, "a\"b\n\xc3\xa9\xf0\x9f\x98\x80") == 0);
    assert(o.members[1].kind == JSON_NUMBER && o.members[1].number == -25.0 && !o.members[1].integral);
    assert(o.members[2].kind == JSON_NUMBER && o.members[2].number == 7.0 && o.members[2].integral);
    assert(o.members[3].kind == JSON_BOOL && o.members[3].boolean);
    assert(o.members[4].kind == JSON_NULL);
    assert(o.members[5].kind == JSON_OBJECT);
    json_object_free(&o);

    o = parse_ok("");
    assert(o.count == 0);
    o = parse_ok(" { } ");
    assert(o.count == 0);

    const char *refused[] = {"[1]", "{\"a\": }", "{\"a\": 1,}", "{\"a\" 1}", "{\"a\": \"unterminated}",
                             "{\"a\": 1} x", "{\"a\": tru}", "{\"a\": \"\\ud800\"}", "{\"a\": \"\\q\"}",
                             "{\"a\": [1, 2}", "{\"a\": -}", "{\"a\": \"\x01\"}"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) parse_refused(refused[i]);

    char deep[400];
    size_t n = 0;
    n += (size_t)sprintf(deep + n, "{\"a\": ");
    for (int i = 0; i < 100; i++) deep[n++] = '[';
    for (int i = 0; i < 100; i++) deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    parse_refused(deep);

    char *buffer = NULL;
    size_t len = 0;
    assert(json_append_string(&buffer, &len, "say \"hi\"\n\t\x01"));
    assert(strcmp(buffer, "\"say \\\"hi\\\"\\n\\t\\u0001\"") == 0);
    free(buffer);
    printf("json_test: all passed\n");
    return 0;
}
