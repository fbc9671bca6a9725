/* names: validation of names that come from config, the wire or libvirt. */
#include "names.h"

#include <string.h>

bool names_valid_n(const char *s, size_t n)
{
        if (!s || n == 0 || n > LS_NAME_MAX)
                return false;
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

bool names_valid(const char *s)
{
        return s && names_valid_n(s, strnlen(s, LS_NAME_MAX + 1));
}
