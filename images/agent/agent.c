// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio-agent: executes VFIO / iommufd primitives for the vfio-conformance harness.
 * Protocol: images/agent/PROTOCOL.md (JSON lines on stdin/stdout).
 *
 * Built statically against the uapi headers of the kernel under test, so that struct layouts and
 * ioctl numbers are those of that kernel. Anything newer than Linux 6.1 sits behind #ifdef: the op
 * still exists and answers UNSUPPORTED, so the harness sees one op table on every kernel.
 *
 * The agent reports; it never judges. Every error path replies instead of exiting, because a dead
 * agent in a guest costs the harness a reboot.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <linux/vfio.h>

/*
 * build.ts defines VFIO_AGENT_NO_IOMMUFD_H when the kernel's own headers lack iommufd.h, so a newer
 * copy in the libc's /usr/include cannot make a pre-iommufd agent claim iommufd support.
 */
#if defined(__has_include)
#if __has_include(<linux/iommufd.h>) && !defined(VFIO_AGENT_NO_IOMMUFD_H)
#include <linux/iommufd.h>
#define HAVE_IOMMUFD_H 1
#endif
#if __has_include(<linux/version.h>)
#include <linux/version.h>
#endif
#endif

#define AGENT_VERSION "1"

/* Optional uAPI, decided once here so ops and `hello` cannot disagree. */
#if defined(HAVE_IOMMUFD_H) && defined(IOMMU_IOAS_ALLOC)
#define HAVE_IOMMUFD 1
#endif
#if defined(VFIO_DEVICE_BIND_IOMMUFD) && defined(VFIO_DEVICE_ATTACH_IOMMUFD_PT)
#define HAVE_DEVICE_CDEV 1
#endif
#if defined(HAVE_IOMMUFD) && defined(IOMMU_GET_HW_INFO)
#define HAVE_HW_INFO 1
#endif
#if defined(HAVE_IOMMUFD) && defined(IOMMU_HWPT_SET_DIRTY_TRACKING)
#define HAVE_DIRTY_TRACKING 1
#endif

#define MAX_LINE (4u << 20)    /* protocol: longer lines are discarded */
#define MAX_IO (1u << 20)      /* one read/pread/feature buffer */
#define MAX_KEYS 32
#define READ_ALL_DEFAULT_LIMIT (64ull << 20)
#define READ_ALL_MAX_LIMIT (256ull << 20)
/*
 * fd_ioctl hands the kernel a pointer whose expected size only the kernel knows (_IOC_SIZE is at
 * most 16 KiB; VFIO's _IO ioctls trust argsz). A generous zeroed floor keeps a short payload from
 * letting the kernel scribble over the agent's heap.
 */
#define IOCTL_BUF_FLOOR (64u << 10)

/* ------------------------------------------------------------------ output buffer */

struct sb {
	char *p;
	size_t len, cap;
};

static void die_oom(void)
{
	/* Not a bad request but a dead process: nothing sensible can be replied without memory. */
	fputs("vfio-agent: out of memory\n", stderr);
	_exit(3);
}

static void sb_reserve(struct sb *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		die_oom();
	b->p = p;
	b->cap = cap;
}

static void sb_putn(struct sb *b, const char *s, size_t n)
{
	sb_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_puts(struct sb *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof small) {
		sb_putn(b, small, (size_t)n);
		return;
	}
	sb_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/*
 * Strings in replies may carry caller-supplied bytes (paths, op names). Non-ASCII bytes are not
 * guaranteed to be valid UTF-8, so they become '?' rather than risk an unparseable reply line.
 */
static void sb_jstr(struct sb *b, const char *s, size_t n)
{
	sb_reserve(b, n + 2);
	sb_putn(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			sb_putn(b, e, 2);
		} else if (c < 0x20 || c == 0x7f) {
			sb_printf(b, "\\u%04x", c);
		} else if (c >= 0x80) {
			sb_putn(b, "?", 1);
		} else {
			sb_putn(b, (const char *)&c, 1);
		}
	}
	sb_putn(b, "\"", 1);
}

static void sb_hex(struct sb *b, const uint8_t *d, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	sb_reserve(b, 2 * n + 2);
	char *o = b->p + b->len;
	*o++ = '"';
	for (size_t i = 0; i < n; i++) {
		*o++ = hx[d[i] >> 4];
		*o++ = hx[d[i] & 15];
	}
	*o++ = '"';
	*o = 0;
	b->len += 2 * n + 2;
}

/* ------------------------------------------------------------------ errno names */

static const char *errno_name(int e)
{
	switch (e) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EXDEV: return "EXDEV";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case ENFILE: return "ENFILE";
	case EMFILE: return "EMFILE";
	case ENOTTY: return "ENOTTY";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case ESPIPE: return "ESPIPE";
	case EROFS: return "EROFS";
	case EPIPE: return "EPIPE";
	case ERANGE: return "ERANGE";
	case EDEADLK: return "EDEADLK";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOSYS: return "ENOSYS";
	case ENOMSG: return "ENOMSG";
	case ENODATA: return "ENODATA";
	case EOVERFLOW: return "EOVERFLOW";
	case EUSERS: return "EUSERS";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EADDRINUSE: return "EADDRINUSE";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EALREADY: return "EALREADY";
	case EINPROGRESS: return "EINPROGRESS";
	case ECANCELED: return "ECANCELED";
	case EHWPOISON: return "EHWPOISON";
	default: return NULL;
	}
}

/* ------------------------------------------------------------------ request parsing */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR };

struct jval {
	enum jtype t;
	bool b;
	bool neg;      /* J_NUM: sign; magnitude in mag, so 2^64-1 and -2^63 both fit */
	uint64_t mag;
	const char *s; /* J_STR: NUL-terminated, decoded, inside the request's string pool */
	size_t slen;
};

struct jkv {
	const char *key;
	struct jval v;
	bool used;
};

struct req {
	struct jkv kv[MAX_KEYS];
	int nkv;
	char *pool;    /* decoded strings; never longer than the raw line */
	size_t pool_len;
	bool has_id;   /* set as soon as "id" is read, so a later syntax error still echoes it */
	struct jval id;
	const char *op;
};

struct parser {
	const char *s;
	size_t n, i;
	struct req *r;
	char err[160];
};

static bool perr(struct parser *p, const char *msg)
{
	snprintf(p->err, sizeof p->err, "malformed JSON at byte %zu: %s", p->i, msg);
	return false;
}

static void pws(struct parser *p)
{
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\r' ||
			       p->s[p->i] == '\n'))
		p->i++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool parse_u4(struct parser *p, unsigned *out)
{
	if (p->n - p->i < 4)
		return perr(p, "truncated \\u escape");
	unsigned v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hexval(p->s[p->i + k]);
		if (h < 0)
			return perr(p, "bad \\u escape");
		v = v * 16 + (unsigned)h;
	}
	p->i += 4;
	*out = v;
	return true;
}

/* Called with p->i just past the opening quote. */
static bool parse_string(struct parser *p, const char **out, size_t *outlen)
{
	char *o = p->r->pool + p->r->pool_len;
	char *start = o;
	for (;;) {
		if (p->i >= p->n)
			return perr(p, "unterminated string");
		unsigned char c = (unsigned char)p->s[p->i++];
		if (c == '"')
			break;
		if (c < 0x20)
			return perr(p, "control character in string");
		if (c != '\\') {
			*o++ = (char)c;
			continue;
		}
		if (p->i >= p->n)
			return perr(p, "unterminated escape");
		char e = p->s[p->i++];
		switch (e) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			unsigned cp;
			if (!parse_u4(p, &cp))
				return false;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return perr(p, "lone low surrogate");
			if (cp >= 0xd800 && cp <= 0xdbff) {
				unsigned lo;
				if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
					return perr(p, "lone high surrogate");
				p->i += 2;
				if (!parse_u4(p, &lo))
					return false;
				if (lo < 0xdc00 || lo > 0xdfff)
					return perr(p, "bad surrogate pair");
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			/* A NUL would silently truncate paths handed to the kernel. */
			if (cp == 0)
				return perr(p, "\\u0000 not allowed");
			/* UTF-8 never takes more bytes than the 6-byte escape it came from. */
			if (cp < 0x80) {
				*o++ = (char)cp;
			} else if (cp < 0x800) {
				*o++ = (char)(0xc0 | (cp >> 6));
				*o++ = (char)(0x80 | (cp & 0x3f));
			} else if (cp < 0x10000) {
				*o++ = (char)(0xe0 | (cp >> 12));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
				*o++ = (char)(0x80 | (cp & 0x3f));
			} else {
				*o++ = (char)(0xf0 | (cp >> 18));
				*o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
				*o++ = (char)(0x80 | (cp & 0x3f));
			}
			break;
		}
		default:
			return perr(p, "bad escape");
		}
	}
	*o++ = 0;
	*out = start;
	*outlen = (size_t)(o - start) - 1;
	p->r->pool_len += (size_t)(o - start);
	return true;
}

static bool parse_number(struct parser *p, struct jval *v)
{
	v->t = J_NUM;
	v->neg = false;
	v->mag = 0;
	if (p->s[p->i] == '-') {
		v->neg = true;
		p->i++;
	}
	if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
		return perr(p, "bad number");
	if (p->s[p->i] == '0' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9')
		return perr(p, "leading zero in number");
	while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
		unsigned d = (unsigned)(p->s[p->i] - '0');
		if (v->mag > (UINT64_MAX - d) / 10)
			return perr(p, "number out of 64-bit range");
		v->mag = v->mag * 10 + d;
		p->i++;
	}
	if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
		return perr(p, "only integers are accepted");
	if (v->neg && v->mag > (uint64_t)INT64_MAX + 1)
		return perr(p, "number out of 64-bit range");
	if (v->neg && v->mag == 0)
		v->neg = false;
	return true;
}

static bool parse_lit(struct parser *p, const char *lit)
{
	size_t l = strlen(lit);
	if (p->n - p->i < l || memcmp(p->s + p->i, lit, l) != 0)
		return perr(p, "unexpected token");
	p->i += l;
	return true;
}

static bool parse_value(struct parser *p, struct jval *v)
{
	if (p->i >= p->n)
		return perr(p, "missing value");
	char c = p->s[p->i];
	memset(v, 0, sizeof *v);
	switch (c) {
	case '"':
		p->i++;
		v->t = J_STR;
		return parse_string(p, &v->s, &v->slen);
	case 't':
		v->t = J_BOOL;
		v->b = true;
		return parse_lit(p, "true");
	case 'f':
		v->t = J_BOOL;
		return parse_lit(p, "false");
	case 'n':
		v->t = J_NULL;
		return parse_lit(p, "null");
	case '{':
	case '[':
		return perr(p, "nested objects and arrays are not accepted");
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return parse_number(p, v);
		return perr(p, "unexpected character");
	}
}

/* A request is one flat JSON object; the whole line must be consumed. */
static bool parse_request(struct parser *p)
{
	struct req *r = p->r;
	pws(p);
	if (p->i >= p->n)
		return perr(p, "empty line");
	if (p->s[p->i] != '{')
		return perr(p, "expected an object");
	p->i++;
	pws(p);
	if (p->i < p->n && p->s[p->i] == '}') {
		p->i++;
	} else {
		for (;;) {
			pws(p);
			if (p->i >= p->n || p->s[p->i] != '"')
				return perr(p, "expected a key");
			p->i++;
			const char *key;
			size_t klen;
			if (!parse_string(p, &key, &klen))
				return false;
			for (int k = 0; k < r->nkv; k++)
				if (strcmp(r->kv[k].key, key) == 0)
					return perr(p, "duplicate key");
			if (r->nkv >= MAX_KEYS)
				return perr(p, "too many keys");
			pws(p);
			if (p->i >= p->n || p->s[p->i] != ':')
				return perr(p, "expected ':'");
			p->i++;
			pws(p);
			struct jkv *kv = &r->kv[r->nkv];
			if (!parse_value(p, &kv->v))
				return false;
			kv->key = key;
			kv->used = false;
			r->nkv++;
			if (strcmp(key, "id") == 0 && kv->v.t == J_NUM) {
				r->has_id = true;
				r->id = kv->v;
			}
			pws(p);
			if (p->i < p->n && p->s[p->i] == ',') {
				p->i++;
				continue;
			}
			if (p->i < p->n && p->s[p->i] == '}') {
				p->i++;
				break;
			}
			return perr(p, p->i >= p->n ? "truncated object" : "expected ',' or '}'");
		}
	}
	pws(p);
	if (p->i != p->n)
		return perr(p, "trailing data after object");
	return true;
}

/* ------------------------------------------------------------------ reply state */

enum status { ST_OK, ST_ERRNO, ST_BADREQ, ST_UNSUPPORTED };

struct ctx {
	struct req *r;
	enum status st;
	int err;
	char where[200];
	char msg[240];
	struct sb f; /* op-specific fields, each prefixed with ',' */
};

static void set_errno(struct ctx *c, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_errno(struct ctx *c, int e, const char *fmt, ...)
{
	va_list ap;
	c->st = ST_ERRNO;
	c->err = e;
	va_start(ap, fmt);
	vsnprintf(c->where, sizeof c->where, fmt, ap);
	va_end(ap);
}

static bool badreq(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool badreq(struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	c->st = ST_BADREQ;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof c->msg, fmt, ap);
	va_end(ap);
	return false;
}

static __attribute__((unused)) void unsupported(struct ctx *c, const char *symbol)
{
	c->st = ST_UNSUPPORTED;
	snprintf(c->msg, sizeof c->msg, "agent built without %s (kernel headers lack it)", symbol);
}

static void f_key(struct ctx *c, const char *k)
{
	sb_printf(&c->f, ",\"%s\":", k);
}

static void f_u64(struct ctx *c, const char *k, uint64_t v)
{
	f_key(c, k);
	sb_printf(&c->f, "%" PRIu64, v);
}

static void f_i64(struct ctx *c, const char *k, int64_t v)
{
	f_key(c, k);
	sb_printf(&c->f, "%" PRId64, v);
}

static void f_bool(struct ctx *c, const char *k, bool v)
{
	f_key(c, k);
	sb_puts(&c->f, v ? "true" : "false");
}

static void f_hex(struct ctx *c, const char *k, const void *d, size_t n)
{
	f_key(c, k);
	sb_hex(&c->f, d, n);
}

static void emit(struct ctx *c)
{
	struct sb o = { 0 };
	sb_puts(&o, "{\"id\":");
	if (c->r && c->r->has_id) {
		if (c->r->id.neg)
			sb_printf(&o, "-%" PRIu64, c->r->id.mag);
		else
			sb_printf(&o, "%" PRIu64, c->r->id.mag);
	} else {
		sb_puts(&o, "null");
	}
	switch (c->st) {
	case ST_OK:
		sb_puts(&o, ",\"ok\":true,\"errno\":0,\"err\":null");
		break;
	case ST_ERRNO: {
		const char *n = errno_name(c->err);
		sb_printf(&o, ",\"ok\":false,\"errno\":%d,\"err\":", c->err);
		if (n)
			sb_printf(&o, "\"%s\"", n);
		else
			sb_printf(&o, "\"E%d\"", c->err);
		sb_puts(&o, ",\"where\":");
		sb_jstr(&o, c->where, strlen(c->where));
		break;
	}
	case ST_BADREQ:
	case ST_UNSUPPORTED:
		sb_printf(&o, ",\"ok\":false,\"errno\":0,\"err\":\"%s\",\"msg\":",
			  c->st == ST_BADREQ ? "BADREQ" : "UNSUPPORTED");
		sb_jstr(&o, c->msg, strlen(c->msg));
		break;
	}
	/* A BADREQ carries no op values: they would be half-filled defaults. */
	if (c->st == ST_OK || c->st == ST_ERRNO)
		if (c->f.len)
			sb_putn(&o, c->f.p, c->f.len);
	sb_puts(&o, "}\n");
	if (fwrite(o.p, 1, o.len, stdout) != o.len || fflush(stdout) != 0) {
		/* The harness is gone; there is no one left to answer. */
		exit(1);
	}
	free(o.p);
}

/* ------------------------------------------------------------------ typed arguments */

static struct jkv *arg_find(struct ctx *c, const char *key)
{
	for (int k = 0; k < c->r->nkv; k++) {
		struct jkv *kv = &c->r->kv[k];
		if (strcmp(kv->key, key) == 0) {
			kv->used = true;
			/* null means "not given", so callers can spell out optional arguments */
			return kv->v.t == J_NULL ? NULL : kv;
		}
	}
	return NULL;
}

static bool has_arg(struct ctx *c, const char *key)
{
	return arg_find(c, key) != NULL;
}

/* Signed integer in [min, max]. Absent and optional: *out keeps its default. */
static bool arg_int(struct ctx *c, const char *key, bool required, int64_t min, int64_t max,
		    int64_t *out)
{
	struct jkv *kv = arg_find(c, key);
	if (!kv)
		return required ? badreq(c, "missing argument '%s'", key) : true;
	if (kv->v.t != J_NUM)
		return badreq(c, "argument '%s' must be an integer", key);
	int64_t v;
	if (kv->v.neg) {
		v = kv->v.mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)kv->v.mag;
	} else {
		if (kv->v.mag > (uint64_t)INT64_MAX)
			return badreq(c, "argument '%s' out of range", key);
		v = (int64_t)kv->v.mag;
	}
	if (v < min || v > max)
		return badreq(c, "argument '%s' out of range [%" PRId64 ", %" PRId64 "]", key, min, max);
	*out = v;
	return true;
}

static bool arg_u64(struct ctx *c, const char *key, bool required, uint64_t max, uint64_t *out)
{
	struct jkv *kv = arg_find(c, key);
	if (!kv)
		return required ? badreq(c, "missing argument '%s'", key) : true;
	if (kv->v.t != J_NUM)
		return badreq(c, "argument '%s' must be an integer", key);
	if (kv->v.neg || kv->v.mag > max)
		return badreq(c, "argument '%s' out of range [0, %" PRIu64 "]", key, max);
	*out = kv->v.mag;
	return true;
}

/* File descriptors stay signed so that -1 and other bad values reach the kernel for EBADF tests. */
static bool arg_fd(struct ctx *c, const char *key, int *out)
{
	int64_t v = 0;
	if (!arg_int(c, key, true, INT_MIN, INT_MAX, &v))
		return false;
	*out = (int)v;
	return true;
}

static bool arg_u32(struct ctx *c, const char *key, bool required, uint32_t *out)
{
	uint64_t v = *out;
	if (!arg_u64(c, key, required, UINT32_MAX, &v))
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool arg_str(struct ctx *c, const char *key, bool required, const char **out)
{
	struct jkv *kv = arg_find(c, key);
	if (!kv)
		return required ? badreq(c, "missing argument '%s'", key) : true;
	if (kv->v.t != J_STR)
		return badreq(c, "argument '%s' must be a string", key);
	*out = kv->v.s;
	return true;
}

static bool arg_bool(struct ctx *c, const char *key, bool required, bool *out)
{
	struct jkv *kv = arg_find(c, key);
	if (!kv)
		return required ? badreq(c, "missing argument '%s'", key) : true;
	if (kv->v.t != J_BOOL)
		return badreq(c, "argument '%s' must be a boolean", key);
	*out = kv->v.b;
	return true;
}

/* Hex string → new buffer of *len bytes (at least 1 byte allocated). Absent: *buf stays NULL. */
static bool arg_hex(struct ctx *c, const char *key, bool required, size_t maxlen, uint8_t **buf,
		    size_t *len)
{
	const char *s = NULL;
	if (!arg_str(c, key, required, &s))
		return false;
	*buf = NULL;
	*len = 0;
	if (!s)
		return true;
	size_t n = strlen(s);
	if (n % 2)
		return badreq(c, "argument '%s' is not hex (odd length)", key);
	if (n / 2 > maxlen)
		return badreq(c, "argument '%s' longer than %zu bytes", key, maxlen);
	uint8_t *b = malloc(n / 2 + 1);
	if (!b)
		die_oom();
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(b);
			return badreq(c, "argument '%s' is not hex", key);
		}
		b[i] = (uint8_t)(hi << 4 | lo);
	}
	*buf = b;
	*len = n / 2;
	return true;
}

/* ------------------------------------------------------------------ helpers */

static void *xcalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p)
		die_oom();
	return p;
}

/* Close without disturbing the errno being reported. */
static void close_keep_errno(int fd)
{
	int e = errno;
	if (fd >= 0)
		close(fd);
	errno = e;
}

/*
 * VFIO_DEVICE_FEATURE with a fixed payload. The header is built in a u64 array so the payload
 * lands 8-byte aligned like the kernel's __aligned_u64 members expect.
 */
static int device_feature(int dev, uint32_t flags, void *payload, size_t plen)
{
	uint64_t buf[8] = { 0 };
	struct vfio_device_feature *f = (struct vfio_device_feature *)buf;
	if (plen > sizeof buf - sizeof *f)
		return errno = EINVAL, -1;
	f->argsz = (uint32_t)(sizeof *f + plen);
	f->flags = flags;
	if (plen)
		memcpy(f->data, payload, plen);
	int ret = ioctl(dev, VFIO_DEVICE_FEATURE, f);
	if (plen)
		memcpy(payload, f->data, plen);
	return ret;
}

static bool region_lookup(struct ctx *c, int dev, uint32_t index, struct vfio_region_info *ri)
{
	memset(ri, 0, sizeof *ri);
	ri->argsz = sizeof *ri;
	ri->index = index;
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, ri) < 0) {
		set_errno(c, errno, "ioctl VFIO_DEVICE_GET_REGION_INFO");
		return false;
	}
	return true;
}

static uint64_t load_le(const uint8_t *b, unsigned size)
{
	/* Host order, like the device sees a CPU access of that width. */
	switch (size) {
	case 1: return b[0];
	case 2: { uint16_t v; memcpy(&v, b, 2); return v; }
	case 4: { uint32_t v; memcpy(&v, b, 4); return v; }
	default: { uint64_t v; memcpy(&v, b, 8); return v; }
	}
}

static void store_le(uint8_t *b, unsigned size, uint64_t v)
{
	switch (size) {
	case 1: b[0] = (uint8_t)v; break;
	case 2: { uint16_t x = (uint16_t)v; memcpy(b, &x, 2); break; }
	case 4: { uint32_t x = (uint32_t)v; memcpy(b, &x, 4); break; }
	default: memcpy(b, &v, 8); break;
	}
}

/* ------------------------------------------------------------------ ops */

static void op_hello(struct ctx *c);

static void op_open(struct ctx *c)
{
	const char *path = NULL, *mode = NULL;
	bool nonblock = false;
	if (!arg_str(c, "path", true, &path) || !arg_str(c, "flags", true, &mode) ||
	    !arg_bool(c, "nonblock", false, &nonblock))
		return;
	int fl;
	if (strcmp(mode, "r") == 0)
		fl = O_RDONLY;
	else if (strcmp(mode, "w") == 0)
		fl = O_WRONLY;
	else if (strcmp(mode, "rw") == 0)
		fl = O_RDWR;
	else {
		badreq(c, "argument 'flags' must be \"r\", \"w\" or \"rw\"");
		return;
	}
	if (nonblock)
		fl |= O_NONBLOCK;
	int fd = open(path, fl | O_CLOEXEC);
	if (fd < 0) {
		set_errno(c, errno, "open %s", path);
		return;
	}
	f_i64(c, "fd", fd);
}

static void op_open_cdev(struct ctx *c)
{
#if !defined(HAVE_DEVICE_CDEV)
	unsupported(c, "VFIO_DEVICE_BIND_IOMMUFD");
#elif !defined(HAVE_IOMMUFD)
	unsupported(c, "IOMMU_IOAS_ALLOC");
#else
	const char *path = NULL;
	if (!arg_str(c, "path", true, &path))
		return;
	int dev = -1, iommufd = -1;
	dev = open(path, O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		set_errno(c, errno, "open %s", path);
		return;
	}
	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommufd < 0) {
		set_errno(c, errno, "open /dev/iommu");
		goto fail;
	}
	/* sizeof of this kernel's struct: 16 bytes before 7.2, 24 with token_uuid_ptr. */
	struct vfio_device_bind_iommufd bind;
	memset(&bind, 0, sizeof bind);
	bind.argsz = sizeof bind;
	bind.iommufd = iommufd;
	if (ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind) < 0) {
		set_errno(c, errno, "ioctl VFIO_DEVICE_BIND_IOMMUFD");
		goto fail;
	}
	struct iommu_ioas_alloc ioas;
	memset(&ioas, 0, sizeof ioas);
	ioas.size = sizeof ioas;
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &ioas) < 0) {
		set_errno(c, errno, "ioctl IOMMU_IOAS_ALLOC");
		goto fail;
	}
	/* flags 0: attach the whole device, never a PASID, whatever the headers offer. */
	struct vfio_device_attach_iommufd_pt at;
	memset(&at, 0, sizeof at);
	at.argsz = sizeof at;
	at.pt_id = ioas.out_ioas_id;
	if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) < 0) {
		set_errno(c, errno, "ioctl VFIO_DEVICE_ATTACH_IOMMUFD_PT");
		goto fail;
	}
	f_i64(c, "dev", dev);
	f_i64(c, "iommufd", iommufd);
	f_u64(c, "ioas", ioas.out_ioas_id);
	f_u64(c, "devid", bind.out_devid);
	f_u64(c, "pt_id", at.pt_id);
	return;
fail:
	/* Closing the iommufd also frees the IOAS; the device fd unbinds on close. */
	close_keep_errno(dev);
	close_keep_errno(iommufd);
#endif
}

static void op_open_group(struct ctx *c)
{
	int64_t group = 0;
	const char *device = NULL;
	if (!arg_int(c, "group", true, 0, INT_MAX, &group) || !arg_str(c, "device", true, &device))
		return;
	int container = -1, gfd = -1, dev;
	char gpath[64];
	snprintf(gpath, sizeof gpath, "/dev/vfio/%" PRId64, group);
	container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (container < 0) {
		set_errno(c, errno, "open /dev/vfio/vfio");
		return;
	}
	gfd = open(gpath, O_RDWR | O_CLOEXEC);
	if (gfd < 0) {
		set_errno(c, errno, "open %s", gpath);
		goto fail;
	}
	if (ioctl(gfd, VFIO_GROUP_SET_CONTAINER, &container) < 0) {
		set_errno(c, errno, "ioctl VFIO_GROUP_SET_CONTAINER");
		goto fail;
	}
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0) {
		set_errno(c, errno, "ioctl VFIO_SET_IOMMU");
		goto fail;
	}
	dev = ioctl(gfd, VFIO_GROUP_GET_DEVICE_FD, device);
	if (dev < 0) {
		set_errno(c, errno, "ioctl VFIO_GROUP_GET_DEVICE_FD");
		goto fail;
	}
	f_i64(c, "dev", dev);
	f_i64(c, "container", container);
	f_i64(c, "group_fd", gfd);
	return;
fail:
	close_keep_errno(gfd);
	close_keep_errno(container);
}

static void op_close(struct ctx *c)
{
	int fd;
	if (!arg_fd(c, "fd", &fd))
		return;
	/* fds 0-2 are the protocol itself; closing them would end the conversation. */
	if (fd >= 0 && fd <= 2) {
		badreq(c, "refusing to close the agent's stdio fd %d", fd);
		return;
	}
	if (close(fd) < 0)
		set_errno(c, errno, "close");
}

static void op_feature(struct ctx *c)
{
	int dev;
	uint32_t flags = 0;
	uint64_t argsz = 0;
	uint8_t *payload = NULL;
	size_t plen = 0;
	const size_t hdr = sizeof(struct vfio_device_feature);
	if (!arg_fd(c, "dev", &dev) || !arg_u32(c, "flags", true, &flags) ||
	    !arg_hex(c, "payload", false, MAX_IO - hdr, &payload, &plen))
		return;
	argsz = hdr + plen;
	/*
	 * argsz is what the kernel believes the buffer holds, so an override larger than the agent
	 * allocates could make the kernel write past it. Allocate whatever argsz claims, up to
	 * MAX_IO; a smaller lie (even < 8) is harmless because the header is always there.
	 */
	if (!arg_u64(c, "argsz", false, MAX_IO, &argsz)) {
		if (c->st == ST_BADREQ)
			snprintf(c->msg, sizeof c->msg,
				 "argument 'argsz' must be an integer in [0, %u] (agent buffer limit)", MAX_IO);
		free(payload);
		return;
	}
	size_t alloc = hdr + plen > argsz ? hdr + plen : (size_t)argsz;
	uint64_t *buf = xcalloc((alloc + 7) / 8 * 8);
	struct vfio_device_feature *f = (struct vfio_device_feature *)buf;
	f->argsz = (uint32_t)argsz;
	f->flags = flags;
	if (plen)
		memcpy(f->data, payload, plen);
	int ret = ioctl(dev, VFIO_DEVICE_FEATURE, f);
	if (ret < 0)
		set_errno(c, errno, "ioctl VFIO_DEVICE_FEATURE");
	f_i64(c, "ret", ret);
	f_hex(c, "payload", f->data, plen);
	free(buf);
	free(payload);
}

static void op_mig_flags(struct ctx *c)
{
	int dev;
	if (!arg_fd(c, "dev", &dev))
		return;
	struct vfio_device_feature_migration m = { 0 };
	if (device_feature(dev, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, &m, sizeof m) < 0) {
		set_errno(c, errno, "ioctl VFIO_DEVICE_FEATURE");
		return;
	}
	f_u64(c, "flags", m.flags);
}

static void op_get_state(struct ctx *c)
{
	int dev;
	if (!arg_fd(c, "dev", &dev))
		return;
	struct vfio_device_feature_mig_state s = { .device_state = 0, .data_fd = -1 };
	if (device_feature(dev, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &s,
			   sizeof s) < 0) {
		set_errno(c, errno, "ioctl VFIO_DEVICE_FEATURE");
		return;
	}
	f_u64(c, "state", s.device_state);
	f_i64(c, "data_fd", s.data_fd);
}

static void op_set_state(struct ctx *c)
{
	int dev;
	uint32_t state = 0;
	if (!arg_fd(c, "dev", &dev) || !arg_u32(c, "state", true, &state))
		return;
	struct vfio_device_feature_mig_state s = { .device_state = state, .data_fd = -1 };
	if (device_feature(dev, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &s,
			   sizeof s) < 0)
		set_errno(c, errno, "ioctl VFIO_DEVICE_FEATURE");
	/* The kernel copies the struct back on failure too; the suite checks what it wrote. */
	f_i64(c, "data_fd", s.data_fd);
	f_u64(c, "state_echo", s.device_state);
}

static void op_data_size(struct ctx *c)
{
#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
	unsupported(c, "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE");
#else
	int dev;
	if (!arg_fd(c, "dev", &dev))
		return;
	struct vfio_device_feature_mig_data_size d = { 0 };
	if (device_feature(dev, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, &d, sizeof d) < 0) {
		set_errno(c, errno, "ioctl VFIO_DEVICE_FEATURE");
		return;
	}
	f_u64(c, "stop_copy_length", d.stop_copy_length);
#endif
}

static void op_precopy_info(struct ctx *c)
{
#ifndef VFIO_MIG_GET_PRECOPY_INFO
	unsupported(c, "VFIO_MIG_GET_PRECOPY_INFO");
#else
	int fd;
	uint32_t flags = 0, argsz = sizeof(struct vfio_precopy_info);
	if (!arg_fd(c, "fd", &fd) || !arg_u32(c, "flags", false, &flags) ||
	    !arg_u32(c, "argsz", false, &argsz))
		return;
	/* Room beyond the struct so an argsz override cannot make a driver write past it. */
	union {
		struct vfio_precopy_info info;
		uint8_t pad[4096];
	} u;
	memset(&u, 0, sizeof u);
	u.info.argsz = argsz;
	u.info.flags = flags;
	if (ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, &u.info) < 0) {
		set_errno(c, errno, "ioctl VFIO_MIG_GET_PRECOPY_INFO");
		return;
	}
	f_u64(c, "flags", u.info.flags);
	f_u64(c, "initial_bytes", u.info.initial_bytes);
	f_u64(c, "dirty_bytes", u.info.dirty_bytes);
#endif
}

static void op_precopy_info_v2(struct ctx *c)
{
#ifndef VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2
	unsupported(c, "VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2");
#else
	int dev;
	if (!arg_fd(c, "dev", &dev))
		return;
	if (device_feature(dev, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2, NULL, 0) < 0)
		set_errno(c, errno, "ioctl VFIO_DEVICE_FEATURE");
#endif
}

static ssize_t read_retry(int fd, void *b, size_t n)
{
	ssize_t r;
	do
		r = read(fd, b, n);
	while (r < 0 && errno == EINTR);
	return r;
}

static void op_read(struct ctx *c)
{
	int fd;
	uint64_t max = 0;
	if (!arg_fd(c, "fd", &fd) || !arg_u64(c, "max", true, MAX_IO, &max))
		return;
	uint8_t *b = xcalloc(max);
	ssize_t n = read_retry(fd, b, max);
	if (n < 0)
		set_errno(c, errno, "read");
	else {
		f_i64(c, "n", n);
		f_hex(c, "data", b, (size_t)n);
	}
	free(b);
}

static void op_read_all(struct ctx *c)
{
	int fd;
	uint64_t chunk = 4096, limit = READ_ALL_DEFAULT_LIMIT;
	if (!arg_fd(c, "fd", &fd) || !arg_u64(c, "chunk", false, MAX_IO, &chunk) ||
	    !arg_u64(c, "limit", false, READ_ALL_MAX_LIMIT, &limit))
		return;
	if (chunk == 0) {
		badreq(c, "argument 'chunk' must be at least 1");
		return;
	}
	size_t cap = 0, total = 0;
	uint8_t *b = NULL;
	uint64_t reads = 0;
	bool eof = false;
	while (total < limit) {
		size_t want = limit - total < chunk ? (size_t)(limit - total) : (size_t)chunk;
		if (cap - total < want) {
			cap = cap ? cap * 2 : 65536;
			while (cap - total < want)
				cap *= 2;
			uint8_t *nb = realloc(b, cap);
			if (!nb)
				die_oom();
			b = nb;
		}
		ssize_t n = read_retry(fd, b + total, want);
		reads++;
		if (n < 0) {
			/* What was read before the error is part of the answer (e.g. ENOMSG in PRE_COPY). */
			set_errno(c, errno, "read");
			break;
		}
		if (n == 0) {
			eof = true;
			break;
		}
		total += (size_t)n;
	}
	f_u64(c, "n", total);
	f_hex(c, "data", b, total);
	f_u64(c, "reads", reads);
	f_bool(c, "eof", eof);
	free(b);
}

static void op_write(struct ctx *c)
{
	int fd;
	uint8_t *d = NULL;
	size_t len = 0;
	if (!arg_fd(c, "fd", &fd) || !arg_hex(c, "data", true, MAX_LINE, &d, &len))
		return;
	ssize_t n;
	do
		n = write(fd, d, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		set_errno(c, errno, "write");
	else
		f_i64(c, "n", n);
	free(d);
}

static void op_pread(struct ctx *c)
{
	int fd;
	uint64_t max = 0;
	int64_t off = 0;
	if (!arg_fd(c, "fd", &fd) || !arg_u64(c, "max", true, MAX_IO, &max) ||
	    !arg_int(c, "offset", true, INT64_MIN, INT64_MAX, &off))
		return;
	uint8_t *b = xcalloc(max);
	ssize_t n = pread(fd, b, max, (off_t)off);
	if (n < 0)
		set_errno(c, errno, "pread");
	else {
		f_i64(c, "n", n);
		f_hex(c, "data", b, (size_t)n);
	}
	free(b);
}

static void op_lseek(struct ctx *c)
{
	int fd;
	int64_t off = 0, whence = 0;
	if (!arg_fd(c, "fd", &fd) || !arg_int(c, "offset", true, INT64_MIN, INT64_MAX, &off) ||
	    !arg_int(c, "whence", true, INT_MIN, INT_MAX, &whence))
		return;
	off_t pos = lseek(fd, (off_t)off, (int)whence);
	if (pos < 0)
		set_errno(c, errno, "lseek");
	else
		f_i64(c, "pos", pos);
}

static void op_poll(struct ctx *c)
{
	int fd;
	int64_t events = 0, timeout = 0;
	if (!arg_fd(c, "fd", &fd) || !arg_int(c, "events", true, 0, 0xffff, &events) ||
	    !arg_int(c, "timeout_ms", false, -1, INT_MAX, &timeout))
		return;
	struct pollfd p = { .fd = fd, .events = (short)events };
	int r;
	do
		r = poll(&p, 1, (int)timeout);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		set_errno(c, errno, "poll");
		return;
	}
	f_i64(c, "ret", r);
	f_u64(c, "revents", (uint16_t)p.revents);
}

static void op_reset(struct ctx *c)
{
	int dev;
	if (!arg_fd(c, "dev", &dev))
		return;
	if (ioctl(dev, VFIO_DEVICE_RESET) < 0)
		set_errno(c, errno, "ioctl VFIO_DEVICE_RESET");
}

static void op_region_info(struct ctx *c)
{
	int dev;
	uint32_t index = 0;
	if (!arg_fd(c, "dev", &dev) || !arg_u32(c, "index", true, &index))
		return;
	struct vfio_region_info ri;
	if (!region_lookup(c, dev, index, &ri))
		return;
	f_u64(c, "size", ri.size);
	f_u64(c, "offset", ri.offset);
	f_u64(c, "flags", ri.flags);
}

/* Shared by region_read/region_write: the region's file offset plus the caller's offset. */
static bool region_access_args(struct ctx *c, int *dev, unsigned *size, off_t *pos,
			       const uint64_t *value)
{
	uint32_t index = 0;
	uint64_t off = 0, sz = 0;
	if (!arg_fd(c, "dev", dev) || !arg_u32(c, "index", true, &index) ||
	    !arg_u64(c, "offset", true, INT64_MAX, &off) || !arg_u64(c, "size", true, 8, &sz))
		return false;
	if (sz != 1 && sz != 2 && sz != 4 && sz != 8)
		return badreq(c, "argument 'size' must be 1, 2, 4 or 8");
	if (value && sz < 8 && *value >> (8 * sz))
		return badreq(c, "argument 'value' does not fit in %u bytes", (unsigned)sz);
	struct vfio_region_info ri;
	if (!region_lookup(c, *dev, index, &ri))
		return false;
	if (ri.offset > (uint64_t)INT64_MAX - off)
		return badreq(c, "region offset + offset overflows off_t");
	*size = (unsigned)sz;
	*pos = (off_t)(ri.offset + off);
	return true;
}

static void op_region_read(struct ctx *c)
{
	int dev;
	unsigned size;
	off_t pos;
	if (!region_access_args(c, &dev, &size, &pos, NULL))
		return;
	uint8_t b[8] = { 0 };
	ssize_t n = pread(dev, b, size, pos);
	if (n < 0) {
		set_errno(c, errno, "pread");
		return;
	}
	f_u64(c, "value", load_le(b, size));
	f_i64(c, "n", n);
}

static void op_region_write(struct ctx *c)
{
	int dev;
	unsigned size;
	off_t pos;
	uint64_t value = 0;
	if (!arg_u64(c, "value", true, UINT64_MAX, &value) ||
	    !region_access_args(c, &dev, &size, &pos, &value))
		return;
	uint8_t b[8];
	store_le(b, size, value);
	ssize_t n = pwrite(dev, b, size, pos);
	if (n < 0) {
		set_errno(c, errno, "pwrite");
		return;
	}
	f_i64(c, "n", n);
}

static void op_fd_ioctl(struct ctx *c)
{
	int fd;
	uint64_t cmd = 0, arg = 0;
	uint8_t *payload = NULL;
	size_t plen = 0;
	if (!arg_fd(c, "fd", &fd) || !arg_u64(c, "cmd", true, UINT32_MAX, &cmd) ||
	    !arg_u64(c, "arg", false, UINT64_MAX, &arg) ||
	    !arg_hex(c, "payload", false, MAX_IO, &payload, &plen))
		return;
	if (payload && has_arg(c, "arg")) {
		free(payload);
		badreq(c, "give either 'payload' or 'arg', not both");
		return;
	}
	int ret;
	uint8_t *buf = NULL;
	if (payload) {
		buf = xcalloc(plen > IOCTL_BUF_FLOOR ? plen : IOCTL_BUF_FLOOR);
		memcpy(buf, payload, plen);
		ret = ioctl(fd, (unsigned long)cmd, buf);
	} else {
		ret = ioctl(fd, (unsigned long)cmd, (unsigned long)arg);
	}
	if (ret < 0)
		set_errno(c, errno, "ioctl 0x%" PRIx64, cmd);
	f_i64(c, "ret", ret);
	if (buf)
		f_hex(c, "payload", buf, plen);
	free(buf);
	free(payload);
}

/* ------------------------------------------------------------------ op table */

struct op {
	const char *name;
	void (*fn)(struct ctx *);
	const char *args; /* space-separated accepted argument names; anything else is BADREQ */
};

static const struct op ops[] = {
	{ "hello", op_hello, "" },
	{ "open", op_open, "path flags nonblock" },
	{ "open_cdev", op_open_cdev, "path" },
	{ "open_group", op_open_group, "group device" },
	{ "close", op_close, "fd" },
	{ "feature", op_feature, "dev flags payload argsz" },
	{ "mig_flags", op_mig_flags, "dev" },
	{ "get_state", op_get_state, "dev" },
	{ "set_state", op_set_state, "dev state" },
	{ "data_size", op_data_size, "dev" },
	{ "precopy_info", op_precopy_info, "fd flags argsz" },
	{ "precopy_info_v2", op_precopy_info_v2, "dev" },
	{ "read", op_read, "fd max" },
	{ "read_all", op_read_all, "fd chunk limit" },
	{ "write", op_write, "fd data" },
	{ "pread", op_pread, "fd max offset" },
	{ "lseek", op_lseek, "fd offset whence" },
	{ "poll", op_poll, "fd events timeout_ms" },
	{ "reset", op_reset, "dev" },
	{ "region_info", op_region_info, "dev index" },
	{ "region_read", op_region_read, "dev index offset size" },
	{ "region_write", op_region_write, "dev index offset size value" },
	{ "fd_ioctl", op_fd_ioctl, "fd cmd payload arg" },
};

static void op_hello(struct ctx *c)
{
	f_key(c, "version");
	sb_puts(&c->f, "\"" AGENT_VERSION "\"");
	f_key(c, "headers");
#if defined(LINUX_VERSION_MAJOR)
	sb_printf(&c->f, "\"%d.%d.%d\"", LINUX_VERSION_MAJOR, LINUX_VERSION_PATCHLEVEL,
		  LINUX_VERSION_SUBLEVEL);
#elif defined(LINUX_VERSION_CODE)
	sb_printf(&c->f, "\"%d.%d.%d\"", LINUX_VERSION_CODE >> 16, (LINUX_VERSION_CODE >> 8) & 255,
		  LINUX_VERSION_CODE & 255);
#else
	sb_puts(&c->f, "null");
#endif
	struct {
		const char *name;
		bool on;
	} u[] = {
#ifdef VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2
		{ "precopy_info_v2", true },
#else
		{ "precopy_info_v2", false },
#endif
#ifdef VFIO_DEVICE_ATTACH_PASID
		{ "attach_pasid", true },
#else
		{ "attach_pasid", false },
#endif
#ifdef VFIO_DEVICE_FEATURE_DMA_LOGGING_START
		{ "dma_logging", true },
#else
		{ "dma_logging", false },
#endif
#ifdef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
		{ "mig_data_size", true },
#else
		{ "mig_data_size", false },
#endif
#ifdef HAVE_IOMMUFD
		{ "iommufd", true },
#else
		{ "iommufd", false },
#endif
#ifdef HAVE_DEVICE_CDEV
		{ "device_cdev", true },
#else
		{ "device_cdev", false },
#endif
#ifdef HAVE_HW_INFO
		{ "hw_info", true },
#else
		{ "hw_info", false },
#endif
#ifdef HAVE_DIRTY_TRACKING
		{ "dirty_tracking", true },
#else
		{ "dirty_tracking", false },
#endif
#ifdef VFIO_MIG_GET_PRECOPY_INFO
		{ "precopy_info", true },
#else
		{ "precopy_info", false },
#endif
	};
	f_key(c, "uapi");
	for (size_t i = 0; i < sizeof u / sizeof u[0]; i++)
		sb_printf(&c->f, "%s\"%s\":%s", i ? "," : "{", u[i].name, u[i].on ? "true" : "false");
	sb_puts(&c->f, "}");
	f_key(c, "ops");
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		sb_printf(&c->f, "%s\"%s\"", i ? "," : "[", ops[i].name);
	sb_puts(&c->f, "]");
}

static bool word_in(const char *list, const char *w)
{
	size_t wl = strlen(w);
	for (const char *p = list; *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == wl && memcmp(p, w, wl) == 0)
			return true;
		p = e;
	}
	return false;
}

static void dispatch(struct ctx *c)
{
	struct req *r = c->r;
	const char *opname = NULL;
	for (int k = 0; k < r->nkv; k++) {
		if (strcmp(r->kv[k].key, "id") == 0) {
			if (r->kv[k].v.t != J_NUM && r->kv[k].v.t != J_NULL) {
				badreq(c, "'id' must be an integer");
				return;
			}
		} else if (strcmp(r->kv[k].key, "op") == 0) {
			if (r->kv[k].v.t != J_STR) {
				badreq(c, "'op' must be a string");
				return;
			}
			opname = r->kv[k].v.s;
		}
	}
	if (!opname) {
		badreq(c, "missing 'op'");
		return;
	}
	const struct op *op = NULL;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (strcmp(ops[i].name, opname) == 0)
			op = &ops[i];
	if (!op) {
		struct sb tmp = { 0 };
		sb_jstr(&tmp, opname, strlen(opname) > 64 ? 64 : strlen(opname));
		badreq(c, "unknown op %s", tmp.p);
		free(tmp.p);
		return;
	}
	/* Reject unknown arguments before acting, so a misspelt optional argument is not ignored. */
	for (int k = 0; k < r->nkv; k++) {
		const char *key = r->kv[k].key;
		if (strcmp(key, "id") == 0 || strcmp(key, "op") == 0)
			continue;
		if (!word_in(op->args, key)) {
			struct sb tmp = { 0 };
			sb_jstr(&tmp, key, strlen(key) > 64 ? 64 : strlen(key));
			badreq(c, "unknown argument %s for op '%s'", tmp.p, op->name);
			free(tmp.p);
			return;
		}
	}
	r->op = op->name;
	op->fn(c);
}

/* ------------------------------------------------------------------ main loop */

struct reader {
	char buf[1 << 16];
	size_t pos, len;
	bool eof;
};

/*
 * Reads one line into *line (without the newline). Returns false at EOF with nothing pending.
 * A line beyond MAX_LINE is drained to its newline and flagged, never buffered whole.
 */
static bool next_line(struct reader *rd, struct sb *line, bool *too_long)
{
	line->len = 0;
	*too_long = false;
	bool any = false;
	for (;;) {
		if (rd->pos == rd->len) {
			if (rd->eof)
				return any;
			ssize_t n = read_retry(0, rd->buf, sizeof rd->buf);
			if (n <= 0) {
				if (n < 0)
					fprintf(stderr, "vfio-agent: stdin: %s\n", strerror(errno));
				rd->eof = true;
				return any;
			}
			rd->pos = 0;
			rd->len = (size_t)n;
		}
		any = true;
		char *start = rd->buf + rd->pos;
		size_t avail = rd->len - rd->pos;
		char *nl = memchr(start, '\n', avail);
		size_t take = nl ? (size_t)(nl - start) : avail;
		if (!*too_long) {
			if (line->len + take > MAX_LINE) {
				*too_long = true;
				line->len = 0;
			} else {
				sb_putn(line, start, take);
			}
		}
		rd->pos += take + (nl ? 1 : 0);
		if (nl)
			return true;
	}
}

int main(void)
{
	/* A write to a pipe whose reader is gone must become EPIPE in a reply, not kill the agent. */
	signal(SIGPIPE, SIG_IGN);
	static struct reader rd;
	struct sb line = { 0 };
	bool too_long;
	while (next_line(&rd, &line, &too_long)) {
		struct req *r = xcalloc(sizeof *r);
		struct ctx c = { .r = r, .st = ST_OK };
		if (too_long) {
			badreq(&c, "line longer than %u bytes discarded", MAX_LINE);
		} else {
			r->pool = xcalloc(line.len + 1);
			struct parser p = { .s = line.p ? line.p : "", .n = line.len, .r = r };
			if (!parse_request(&p))
				badreq(&c, "%s", p.err);
			else
				dispatch(&c);
		}
		emit(&c);
		free(c.f.p);
		free(r->pool);
		free(r);
		/* Give back the memory of a huge line instead of holding it for the agent's lifetime. */
		if (line.cap > (1u << 20)) {
			free(line.p);
			line = (struct sb){ 0 };
		}
	}
	free(line.p);
	return 0;
}
