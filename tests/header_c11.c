/* The public header must compile as strict C11 (-std=c11 -pedantic -Wall -Wextra
 * -Werror); built by meson and run as a test. */
#include <stochflow.h>
#include <string.h>

int main(void) {
    return strcmp(stochflow_version_string(), STOCHFLOW_VERSION_STRING) == 0 ? 0 : 1;
}
