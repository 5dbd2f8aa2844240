/* fedmcp SDK for C: write MCP tools as plain C functions.
 *
 * A plugin defines its tools in a table and one registration function:
 *
 *     static const fedmcp_param params[] = {
 *         { "text", FEDMCP_STRING, true, "The text to count" },
 *     };
 *     static int count(const fedmcp_args *args, fedmcp_result *result) {
 *         const char *text = fedmcp_arg_string(args, "text");
 *         return fedmcp_text(result, "%zu bytes", strlen(text));
 *     }
 *     const fedmcp_tool fedmcp_tools[] = {
 *         { "count", "Count the bytes of a text", params, 1, count },
 *     };
 *     const size_t fedmcp_tool_count = 1;
 *
 * The SDK builds each tool's input schema from its parameters and checks the arguments of
 * every call against them before the tool runs, with the same messages as the Rust, Python
 * and JavaScript SDKs ("missing required argument: text", "argument text must be of type
 * string", "unknown argument: x"). Resources, prompts and completions are exported empty.
 *
 * Memory: everything the SDK hands a tool lives until the call returns; a tool frees nothing
 * it got from the SDK.
 */
#ifndef FEDMCP_H
#define FEDMCP_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { FEDMCP_STRING, FEDMCP_NUMBER, FEDMCP_INTEGER, FEDMCP_BOOLEAN } fedmcp_type;

typedef struct {
    const char *name;
    fedmcp_type type;
    bool required;
    const char *description;
} fedmcp_param;

/* The checked arguments of one call. */
typedef struct fedmcp_args fedmcp_args;
/* What a call returns: content blocks, or an error. */
typedef struct fedmcp_result fedmcp_result;

/* A tool returns 0 when it filled `result` (content, or a tool error made with
 * fedmcp_tool_error), or the value of fedmcp_invalid_params / fedmcp_internal_error. */
typedef int (*fedmcp_tool_fn)(const fedmcp_args *args, fedmcp_result *result);

typedef struct {
    const char *name;
    const char *description;
    const fedmcp_param *params;
    size_t param_count;
    fedmcp_tool_fn call;
} fedmcp_tool;

/* Defined by the plugin. */
extern const fedmcp_tool fedmcp_tools[];
extern const size_t fedmcp_tool_count;

/* Whether the caller gave the (optional) argument. */
bool fedmcp_has_arg(const fedmcp_args *args, const char *name);
/* A string argument (NUL-terminated, unescaped); "" when absent. */
const char *fedmcp_arg_string(const fedmcp_args *args, const char *name);
/* A number or integer argument; `fallback` when absent. */
double fedmcp_arg_number(const fedmcp_args *args, const char *name, double fallback);
/* A boolean argument; `fallback` when absent. */
bool fedmcp_arg_bool(const fedmcp_args *args, const char *name, bool fallback);

/* Append a text content block, printf-style. Returns 0 (or a nonzero error if out of memory). */
int fedmcp_text(fedmcp_result *result, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* Mark the result as a tool error (the model sees it and may try again); add text to say why. */
void fedmcp_tool_error(fedmcp_result *result);
/* The caller's arguments are wrong: returned from the tool, the call fails with -32602. */
int fedmcp_invalid_params(fedmcp_result *result, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* The plugin failed: returned from the tool, the call fails with an internal error. */
int fedmcp_internal_error(fedmcp_result *result, const char *format, ...) __attribute__((format(printf, 2, 3)));

typedef enum { FEDMCP_DEBUG, FEDMCP_INFO, FEDMCP_WARNING, FEDMCP_ERROR } fedmcp_level;
/* A log message for the client that made the call (and the host's log). */
void fedmcp_log(fedmcp_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* Progress of the current call (total < 0: unknown). */
void fedmcp_progress(double progress, double total);

#endif
