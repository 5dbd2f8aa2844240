/* The little JSON the C SDK needs: the top-level members of a tool's arguments object, and
 * strings written into JSON text. Not a general parser: nested values are checked for
 * well-formedness and skipped. */
#ifndef FEDMCP_JSON_H
#define FEDMCP_JSON_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_kind;

typedef struct {
    char *name;       /* unescaped, NUL-terminated */
    json_kind kind;
    char *string;     /* JSON_STRING: unescaped, NUL-terminated */
    double number;    /* JSON_NUMBER */
    bool integral;    /* JSON_NUMBER written without fraction or exponent */
    bool boolean;     /* JSON_BOOL */
} json_member;

typedef struct {
    json_member *members;
    size_t count;
} json_object;

/* Parse `text` (length `len`) as one JSON object; false (with `error` set to a static
 * message) if it is not one. An empty text is an empty object. */
bool json_parse_object(const char *text, size_t len, json_object *out, const char **error);
void json_object_free(json_object *object);

/* Append `text` to `*buffer` as a JSON string (quoted, escaped); false if out of memory. */
bool json_append_string(char **buffer, size_t *len, const char *text);
/* Append raw `text` to `*buffer`; false if out of memory. */
bool json_append(char **buffer, size_t *len, const char *text);

#endif
