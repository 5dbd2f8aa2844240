#include "json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *at;
    const char *end;
    const char *error;
} cursor;

/* Nesting deeper than this is refused rather than followed (the stack is small). */
#define MAX_DEPTH 64

static void skip_space(cursor *c) {
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\t' || *c->at == '\n' || *c->at == '\r')) c->at++;
}

static bool fail(cursor *c, const char *message) {
    if (!c->error) c->error = message;
    return false;
}

static bool literal(cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->at) < n || memcmp(c->at, word, n) != 0) return fail(c, "invalid JSON literal");
    c->at += n;
    return true;
}

static int hex_digit(char h) {
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    return -1;
}

static bool hex4(cursor *c, uint32_t *out) {
    if (c->end - c->at < 4) return fail(c, "truncated \\u escape");
    uint32_t value = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(c->at[i]);
        if (d < 0) return fail(c, "invalid \\u escape");
        value = value << 4 | (uint32_t)d;
    }
    c->at += 4;
    *out = value;
    return true;
}

static size_t put_utf8(char *out, uint32_t code) {
    if (code < 0x80) { out[0] = (char)code; return 1; }
    if (code < 0x800) { out[0] = (char)(0xC0 | code >> 6); out[1] = (char)(0x80 | (code & 0x3F)); return 2; }
    if (code < 0x10000) {
        out[0] = (char)(0xE0 | code >> 12); out[1] = (char)(0x80 | (code >> 6 & 0x3F));
        out[2] = (char)(0x80 | (code & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | code >> 18); out[1] = (char)(0x80 | (code >> 12 & 0x3F));
    out[2] = (char)(0x80 | (code >> 6 & 0x3F)); out[3] = (char)(0x80 | (code & 0x3F)); return 4;
}

/* Parse a string at the cursor (on its opening quote); `out` gets a malloc'd copy when not NULL. */
static bool string(cursor *c, char **out) {
    c->at++; /* the opening quote */
    /* The unescaped text is never longer than the escaped one. */
    char *text = out ? malloc((size_t)(c->end - c->at) + 1) : NULL;
    if (out && !text) return fail(c, "out of memory");
    size_t n = 0;
    while (c->at < c->end) {
        char ch = *c->at++;
        if (ch == '"') {
            if (out) { text[n] = '\0'; *out = text; }
            return true;
        }
        if ((unsigned char)ch < 0x20) { free(text); return fail(c, "control character in a JSON string"); }
        if (ch != '\\') { if (text) text[n] = ch; n++; continue; }
        if (c->at >= c->end) break;
        char escaped = *c->at++;
        char simple = 0;
        switch (escaped) {
            case '"': simple = '"'; break;
            case '\\': simple = '\\'; break;
            case '/': simple = '/'; break;
            case 'b': simple = '\b'; break;
            case 'f': simple = '\f'; break;
            case 'n': simple = '\n'; break;
            case 'r': simple = '\r'; break;
            case 't': simple = '\t'; break;
            case 'u': {
                uint32_t code;
                if (!hex4(c, &code)) { free(text); return false; }
                if (code >= 0xD800 && code < 0xDC00) {
                    uint32_t low;
                    if (c->end - c->at < 6 || c->at[0] != '\\' || c->at[1] != 'u') {
                        free(text); return fail(c, "unpaired surrogate in a JSON string");
                    }
                    c->at += 2;
                    if (!hex4(c, &low)) { free(text); return false; }
                    if (low < 0xDC00 || low >= 0xE000) { free(text); return fail(c, "unpaired surrogate in a JSON string"); }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                } else if (code >= 0xDC00 && code < 0xE000) {
                    free(text); return fail(c, "unpaired surrogate in a JSON string");
                }
                char bytes[4];
                size_t len = put_utf8(bytes, code);
                if (text) memcpy(text + n, bytes, len);
                n += len;
                continue;
            }
            default: free(text); return fail(c, "invalid escape in a JSON string");
        }
        if (text) text[n] = simple;
        n++;
    }
    free(text);
    return fail(c, "unterminated JSON string");
}

static bool number(cursor *c, double *out, bool *integral) {
    const char *start = c->at;
    *integral = true;
    if (c->at < c->end && *c->at == '-') c->at++;
    if (c->at >= c->end || *c->at < '0' || *c->at > '9') return fail(c, "invalid JSON number");
    while (c->at < c->end && ((*c->at >= '0' && *c->at <= '9') || *c->at == '.' || *c->at == 'e' ||
                              *c->at == 'E' || *c->at == '+' || *c->at == '-')) {
        if (*c->at == '.' || *c->at == 'e' || *c->at == 'E') *integral = false;
        c->at++;
    }
    size_t len = (size_t)(c->at - start);
    char buffer[64];
    if (len >= sizeof buffer) return fail(c, "JSON number too long");
    memcpy(buffer, start, len);
    buffer[len] = '\0';
    char *rest;
    *out = strtod(buffer, &rest);
    if (*rest != '\0') return fail(c, "invalid JSON number");
    return true;
}

static bool value(cursor *c, json_member *into, int depth);

static bool skip_container(cursor *c, char close, int depth) {
    if (depth > MAX_DEPTH) return fail(c, "JSON nested too deeply");
    c->at++;
    skip_space(c);
    if (c->at < c->end && *c->at == close) { c->at++; return true; }
    for (;;) {
        skip_space(c);
        if (close == '}') {
            if (c->at >= c->end || *c->at != '"') return fail(c, "expected a member name");
            if (!string(c, NULL)) return false;
            skip_space(c);
            if (c->at >= c->end || *c->at != ':') return fail(c, "expected ':'");
            c->at++;
        }
        if (!value(c, NULL, depth + 1)) return false;
        skip_space(c);
        if (c->at < c->end && *c->at == ',') { c->at++; continue; }
        if (c->at < c->end && *c->at == close) { c->at++; return true; }
        return fail(c, "expected ',' or the end of a container");
    }
}

/* Parse one value; `into` (when not NULL) gets its kind and scalar contents. */
static bool value(cursor *c, json_member *into, int depth) {
    skip_space(c);
    if (c->at >= c->end) return fail(c, "expected a JSON value");
    json_member ignored;
    json_member *m = into ? into : &ignored;
    switch (*c->at) {
        case '{': m->kind = JSON_OBJECT; return skip_container(c, '}', depth);
        case '[': m->kind = JSON_ARRAY; return skip_container(c, ']', depth);
        case '"': m->kind = JSON_STRING; return string(c, into ? &into->string : NULL);
        case 't': m->kind = JSON_BOOL; m->boolean = true; return literal(c, "true");
        case 'f': m->kind = JSON_BOOL; m->boolean = false; return literal(c, "false");
        case 'n': m->kind = JSON_NULL; return literal(c, "null");
        default: m->kind = JSON_NUMBER; return number(c, &m->number, &m->integral);
    }
}

void json_object_free(json_object *object) {
    for (size_t i = 0; i < object->count; i++) {
        free(object->members[i].name);
        free(object->members[i].string);
    }
    free(object->members);
    object->members = NULL;
    object->count = 0;
}

bool json_parse_object(const char *text, size_t len, json_object *out, const char **error) {
    cursor c = { text, text + len, NULL };
    out->members = NULL;
    out->count = 0;
    skip_space(&c);
    if (c.at == c.end) return true;
    if (*c.at != '{') { *error = "the arguments are not a JSON object"; return false; }
    c.at++;
    skip_space(&c);
    size_t capacity = 0;
    if (c.at < c.end && *c.at == '}') {
        c.at++;
    } else {
        for (;;) {
            skip_space(&c);
            if (c.at >= c.end || *c.at != '"') { fail(&c, "expected a member name"); break; }
            if (out->count == capacity) {
                capacity = capacity ? capacity * 2 : 8;
                json_member *grown = realloc(out->members, capacity * sizeof *grown);
                if (!grown) { fail(&c, "out of memory"); break; }
                out->members = grown;
            }
            json_member *m = &out->members[out->count];
            memset(m, 0, sizeof *m);
            out->count++;
            if (!string(&c, &m->name)) break;
            skip_space(&c);
            if (c.at >= c.end || *c.at != ':') { fail(&c, "expected ':'"); break; }
            c.at++;
            if (!value(&c, m, 1)) break;
            skip_space(&c);
            if (c.at < c.end && *c.at == ',') { c.at++; continue; }
            if (c.at < c.end && *c.at == '}') { c.at++; break; }
            fail(&c, "expected ',' or '}'");
            break;
        }
    }
    skip_space(&c);
    if (!c.error && c.at != c.end) fail(&c, "text after the JSON object");
    if (c.error) {
        *error = c.error;
        json_object_free(out);
        return false;
    }
    return true;
}

bool json_append(char **buffer, size_t *len, const char *text) {
    size_t n = strlen(text);
    char *grown = realloc(*buffer, *len + n + 1);
    if (!grown) return false;
    memcpy(grown + *len, text, n + 1);
    *buffer = grown;
    *len += n;
    return true;
}

bool json_append_string(char **buffer, size_t *len, const char *text) {
    if (!json_append(buffer, len, "\"")) return false;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        char escaped[8];
        switch (*p) {
            case '"': strcpy(escaped, "\\\""); break;
            case '\\': strcpy(escaped, "\\\\"); break;
            case '\n': strcpy(escaped, "\\n"); break;
            case '\r': strcpy(escaped, "\\r"); break;
            case '\t': strcpy(escaped, "\\t"); break;
            default:
                if (*p < 0x20) {
                    static const char digits[] = "0123456789abcdef";
                    escaped[0] = '\\'; escaped[1] = 'u'; escaped[2] = '0'; escaped[3] = '0';
                    escaped[4] = digits[*p >> 4]; escaped[5] = digits[*p & 15]; escaped[6] = '\0';
                } else {
                    escaped[0] = (char)*p; escaped[1] = '\0';
                }
        }
        if (!json_append(buffer, len, escaped)) return false;
    }
    return json_append(buffer, len, "\"");
}
