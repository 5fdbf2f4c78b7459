// libcurl for outbound HTTP (libcurl4-openssl-dev). curl_easy_setopt, curl_easy_getinfo and
// curl_multi_setopt are C variadic functions, which Swift cannot call: these typed wrappers are.
#include <curl/curl.h>

static inline CURLcode myba_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode myba_easy_setopt_pointer(CURL *handle, CURLoption option, const void *value) {
    return curl_easy_setopt(handle, option, value);
}

typedef size_t (*myba_data_callback)(char *data, size_t size, size_t count, void *context);

static inline CURLcode myba_easy_setopt_callback(CURL *handle, CURLoption option, myba_data_callback callback) {
    return curl_easy_setopt(handle, option, callback);
}

static inline CURLcode myba_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLMcode myba_multi_setopt_long(CURLM *multi, CURLMoption option, long value) {
    return curl_multi_setopt(multi, option, value);
}

/// The finished transfer of a CURLMSG_DONE message, and its result; 0 for other messages.
static inline int myba_multi_message_done(CURLMsg *message, CURL **handle, CURLcode *result) {
    if (message->msg != CURLMSG_DONE) return 0;
    *handle = message->easy_handle;
    *result = message->data.result;
    return 1;
}
