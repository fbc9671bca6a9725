/* lserr: error codes shared by every module and the caller-provided error buffer
 * that a failing function fills once, naming the object and the step. */
#pragma once

#include <errno.h>
#include <stdarg.h>

/* Protocol failures get their own negative codes, below every errno value. */
enum {
        LS_E_BASE = -10000,
        LS_EOVERSIZE,      /* message larger than the limit */
        LS_EMALFORMED,     /* envelope or body does not unpack */
        LS_EVERSION,       /* envelope version not supported */
        LS_EUNKNOWNKEY,    /* key id not among the trusted keys */
        LS_EBADSIG,        /* signature does not verify (includes wrong tag) */
        LS_ETARGET,        /* command is addressed to another agent */
        LS_EEXPIRED,       /* issue time older than the window */
        LS_EFUTURE,        /* issue time newer than the window */
        LS_EREPLAY,        /* nonce already seen */
        LS_ECOUNTER,       /* counter not above what was accepted */
        LS_EROLE,          /* key's role does not allow the step */
        LS_ENONCEFULL,     /* nonce cache full of unexpired entries */
        LS_EKEYPERM,       /* secret key file readable by group or other */
        LS_EKEYFORMAT,     /* key file not in the documented format */
        LS_ECONFIG,        /* configuration invalid */
        LS_ETIMEDOUT,      /* peer did not answer before the deadline */
        LS_EPEER,          /* peer answered with something we refuse */
        /* Hypervisor outcomes, mapped one to one onto the wire's ErrorCode. */
        LS_ENODOMAIN,      /* no such domain */
        LS_ENOTRUNNING,    /* domain is not running */
        LS_EPAUSED,        /* domain is paused: fsfreeze cannot run in it */
        LS_ENOGA,          /* guest agent not connected / not answering */
        LS_EGATIMEOUT,     /* guest agent did not answer before its deadline */
        LS_EDISK,          /* a disk cannot take an external qcow2 overlay */
        LS_EOVERLAYEXISTS, /* the overlay file the agent would create exists */
        LS_ENOSPACE,       /* not enough free space for the overlay */
        LS_ETHAWEDEARLY,   /* guest was no longer frozen at thaw */
        LS_EHOOK,          /* a guest hook failed or timed out */
        LS_EIMAGE,         /* an image a revert needs is missing */
        LS_ECORRUPT,       /* an image fails its check */
        LS_EHV,            /* other hypervisor failure */
        LS_EREFUSED,       /* agent refused the command before its signature verified */
        LS_EEPOCH,         /* command from a leader older than one the agent obeyed */
        LS_E_LAST,
};

#define LSERR_MSG_MAX 512

typedef struct lserr {
        int code;
        char msg[LSERR_MSG_MAX];
} lserr;

/* Fills err (may be NULL) once: a second call keeps the first message, so the
 * innermost, most specific failure is what the user reads. Returns code. */
int lserr_set(lserr *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Clears err for reuse. */
void lserr_clear(lserr *err);

/* Short stable name of a code ("bad-signature", "ENOENT"...), for logs and JSON. */
const char *lserr_name(int code);
