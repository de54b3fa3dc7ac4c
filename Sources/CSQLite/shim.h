#include <sqlite3.h>

/* sqlite3_config is variadic, so Swift cannot call it: this wraps the process-wide settings
   p2pos uses. Must run before the first connection opens (sqlite3_initialize). No memory
   statistics: with them on, every SQLite allocation takes a global mutex. */
static inline int p2pos_sqlite_configure(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
