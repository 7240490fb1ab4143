// The public header must compile as C++ with -Wall -Wextra -Werror (meson builds this
// file with those flags; a warning fails the build and therefore the test suite).
#include <stochflow.h>

int main() {
    stochflow_model *m = nullptr;
    stochflow_model_free(m);
    return stochflow_version_number() == STOCHFLOW_VERSION_NUMBER ? 0 : 1;
}
