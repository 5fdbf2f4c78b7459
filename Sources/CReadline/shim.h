// GNU readline and history for the operator console. stdio.h must come first: readline's
// headers use FILE without including it.
#include <stdio.h>
#include <readline/readline.h>
#include <readline/history.h>
