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
#include <sys/mman.h>
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
	int64_t group = 0, type = VFIO_TYPE1v2_IOMMU;
	const char *device = NULL;
	/* iommu_type: VFIO_SET_IOMMU's argument (default type1v2; 1 = type1 v1 for EACCES tests) */
	if (!arg_int(c, "group", true, 0, INT_MAX, &group) || !arg_str(c, "device", true, &device) ||
	    !arg_int(c, "iommu_type", false, 0, INT_MAX, &type))
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
	if (ioctl(container, VFIO_SET_IOMMU, (unsigned long)type) < 0) {
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

static void op_pwrite(struct ctx *c)
{
	int fd;
	int64_t off = 0;
	uint8_t *d = NULL;
	size_t len = 0;
	if (!arg_fd(c, "fd", &fd) || !arg_int(c, "offset", true, INT64_MIN, INT64_MAX, &off) ||
	    !arg_hex(c, "data", true, MAX_LINE, &d, &len))
		return;
	ssize_t n = pwrite(fd, d, len, (off_t)off);
	if (n < 0)
		set_errno(c, errno, "pwrite");
	else
		f_i64(c, "n", n);
	free(d);
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

/* ------------------------------------------------------------------ ops: memory for DMA mappings */

/*
 * Mappings need user memory that outlives the request. The agent mmaps it (anonymous, private,
 * optionally hugetlb) and keeps it until `mem_free`; the harness holds the address. Nothing is
 * touched here: pinning (IOAS_MAP, MAP_DMA) faults the pages in.
 */
/*
 * The agent's own allocations, so mem_read/mem_write can refuse an address that is not one of them:
 * a typo in a test must give BADREQ, not a SIGSEGV that kills the agent and every fd it holds.
 */
#define MAX_TRACKED 1024
static struct { uint8_t *p; size_t len; } tracked[MAX_TRACKED];

static void track_add(void *p, size_t len)
{
	for (int i = 0; i < MAX_TRACKED; i++)
		if (!tracked[i].p) {
			tracked[i].p = p;
			tracked[i].len = len;
			return;
		}
	/* table full: the memory stays usable for mappings, just not for mem_read/mem_write */
}

static void track_remove(void *p, size_t len)
{
	uint8_t *lo = p, *hi = lo + len;
	for (int i = 0; i < MAX_TRACKED; i++)
		if (tracked[i].p && tracked[i].p >= lo && tracked[i].p + tracked[i].len <= hi)
			tracked[i].p = NULL;
}

/* [addr, addr+len) inside one tracked allocation */
static bool tracked_range(uint64_t addr, uint64_t len)
{
	for (int i = 0; i < MAX_TRACKED; i++) {
		uint64_t b = (uint64_t)(uintptr_t)tracked[i].p;
		if (tracked[i].p && addr >= b && len <= tracked[i].len && addr - b <= tracked[i].len - len)
			return true;
	}
	return false;
}

static bool agent_mmap(struct ctx *c, uint64_t length, bool hugetlb, void **out)
{
	if (length == 0 || length > (1ull << 40))
		return badreq(c, "argument 'length' must be in [1, 2^40] to allocate backing memory");
	int fl = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	if (hugetlb)
		fl |= MAP_HUGETLB;
	void *p = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, fl, -1, 0);
	if (p == MAP_FAILED) {
		set_errno(c, errno, "mmap %" PRIu64 " bytes%s", length, hugetlb ? " MAP_HUGETLB" : "");
		return false;
	}
	*out = p;
	track_add(p, (size_t)length);
	return true;
}

/* `addr` given: use it as is (the kernel judges it); absent: allocate `length` bytes. */
static bool mapping_memory(struct ctx *c, uint64_t length, void **va)
{
	uint64_t addr = 0;
	bool hugetlb = false;
	if (!arg_u64(c, "addr", false, UINT64_MAX, &addr) || !arg_bool(c, "hugetlb", false, &hugetlb))
		return false;
	if (has_arg(c, "addr")) {
		*va = (void *)(uintptr_t)addr;
		return true;
	}
	return agent_mmap(c, length, hugetlb, va);
}

static void op_mem_alloc(struct ctx *c)
{
	uint64_t length = 0;
	bool hugetlb = false;
	void *p;
	if (!arg_u64(c, "length", true, UINT64_MAX, &length) || !arg_bool(c, "hugetlb", false, &hugetlb) ||
	    !agent_mmap(c, length, hugetlb, &p))
		return;
	f_u64(c, "addr", (uint64_t)(uintptr_t)p);
}

static void op_mem_free(struct ctx *c)
{
	uint64_t addr = 0, length = 0;
	if (!arg_u64(c, "addr", true, UINT64_MAX, &addr) || !arg_u64(c, "length", true, UINT64_MAX, &length))
		return;
	if (munmap((void *)(uintptr_t)addr, (size_t)length) < 0)
		set_errno(c, errno, "munmap");
	else
		track_remove((void *)(uintptr_t)addr, (size_t)length);
}

/*
 * The page frame behind an address of agent-allocated memory, from /proc/self/pagemap (root sees
 * PFNs). The page is touched first: an untouched MAP_NORESERVE page has no frame yet. A case uses
 * it to know which IOPTE sizes the kernel can pick: physically contiguous hugetlb pages, aligned,
 * let an IOMMU driver map them with one larger entry.
 */
static void op_mem_pfn(struct ctx *c)
{
	uint64_t addr = 0, entry = 0;
	if (!arg_u64(c, "addr", true, UINT64_MAX, &addr))
		return;
	if (!tracked_range(addr, 1)) {
		badreq(c, "addr is not inside memory this agent allocated");
		return;
	}
	*(volatile uint8_t *)(uintptr_t)addr = *(volatile uint8_t *)(uintptr_t)addr;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		set_errno(c, errno, "open /proc/self/pagemap");
		return;
	}
	ssize_t n = pread(fd, &entry, sizeof entry, (off_t)(addr / 4096 * sizeof entry));
	int err = errno;
	close(fd);
	if (n != (ssize_t)sizeof entry) {
		set_errno(c, n < 0 ? err : EIO, "pread /proc/self/pagemap");
		return;
	}
	/* bit 63 present, bits 0-54 the PFN (Documentation/admin-guide/mm/pagemap.rst) */
	if (!(entry >> 63)) {
		set_errno(c, ENXIO, "page at 0x%" PRIx64 " is not present", addr);
		return;
	}
	f_u64(c, "pfn", entry & ((1ull << 55) - 1));
}

/* Bytes of agent-allocated memory: what a device's DMA wrote, or the pattern it should read. */
static void op_mem_read(struct ctx *c)
{
	uint64_t addr = 0, length = 0;
	if (!arg_u64(c, "addr", true, UINT64_MAX, &addr) || !arg_u64(c, "length", true, MAX_IO, &length))
		return;
	if (!tracked_range(addr, length)) {
		badreq(c, "[addr, addr+length) is not inside memory this agent allocated");
		return;
	}
	f_hex(c, "data", (const uint8_t *)(uintptr_t)addr, (size_t)length);
}

static void op_mem_write(struct ctx *c)
{
	uint64_t addr = 0;
	uint8_t *d = NULL;
	size_t len = 0;
	if (!arg_u64(c, "addr", true, UINT64_MAX, &addr) || !arg_hex(c, "data", true, MAX_LINE, &d, &len))
		return;
	if (!tracked_range(addr, len))
		badreq(c, "[addr, addr+length of data) is not inside memory this agent allocated");
	else
		memcpy((void *)(uintptr_t)addr, d, len);
	free(d);
}

/* Zeroed bitmap buffer of n bytes at a caller-chosen misalignment (offset) inside a page-aligned block. */
struct bitbuf {
	void *block;
	size_t block_len;
	uint8_t *p;
	size_t n;
};

static bool bitbuf_alloc(struct ctx *c, struct bitbuf *b, uint64_t n, uint64_t offset)
{
	if (n > (256ull << 20) + 4096 || offset > 65536)
		return badreq(c, "bitmap of %" PRIu64 " bytes at offset %" PRIu64 " is beyond the agent's limit", n, offset);
	b->block_len = (size_t)((n + offset + 4095) & ~4095ull);
	if (b->block_len == 0)
		b->block_len = 4096;
	/* mmap: zeroed, and a 256 MiB "size" costs nothing until the kernel writes into it */
	void *p = mmap(NULL, b->block_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		set_errno(c, errno, "mmap bitmap");
		return false;
	}
	b->block = p;
	b->p = (uint8_t *)p + offset;
	b->n = (size_t)n;
	return true;
}

static void bitbuf_free(struct bitbuf *b)
{
	if (b->block)
		munmap(b->block, b->block_len);
	b->block = NULL;
}

/* Reply `bitmap` (hex, at most MAX_IO bytes of it) and `bits_set` over the whole buffer. */
static void f_bitmap(struct ctx *c, const struct bitbuf *b)
{
	uint64_t set = 0;
	for (size_t i = 0; i < b->n; i++)
		set += (uint64_t)__builtin_popcount(b->p[i]);
	f_hex(c, "bitmap", b->p, b->n > MAX_IO ? MAX_IO : b->n);
	f_u64(c, "bits_set", set);
}

/* Bytes a bitmap of `bits` bits takes when rounded up to whole u64 words (the kernel's unit). */
static uint64_t bitmap_bytes(uint64_t bits)
{
	return (bits + 63) / 64 * 8;
}

/* ------------------------------------------------------------------ ops: iommufd */

#ifdef HAVE_IOMMUFD
static int iommufd_ioctl(struct ctx *c, int fd, unsigned long cmd, void *arg, const char *what)
{
	int r = ioctl(fd, cmd, arg);
	if (r < 0)
		set_errno(c, errno, "ioctl %s", what);
	return r;
}
#endif

static void op_iommufd_open(struct ctx *c)
{
#ifndef HAVE_IOMMUFD
	unsupported(c, "IOMMU_IOAS_ALLOC");
#else
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		set_errno(c, errno, "open /dev/iommu");
		return;
	}
	f_i64(c, "fd", fd);
#endif
}

static void op_ioas_alloc(struct ctx *c)
{
#ifndef HAVE_IOMMUFD
	unsupported(c, "IOMMU_IOAS_ALLOC");
#else
	int fd;
	if (!arg_fd(c, "iommufd", &fd))
		return;
	struct iommu_ioas_alloc a = { .size = sizeof a };
	if (iommufd_ioctl(c, fd, IOMMU_IOAS_ALLOC, &a, "IOMMU_IOAS_ALLOC") == 0)
		f_u64(c, "ioas", a.out_ioas_id);
#endif
}

static void op_ioas_option(struct ctx *c)
{
#ifndef HAVE_IOMMUFD
	unsupported(c, "IOMMU_OPTION");
#else
	int fd;
	uint32_t object = 0, option = 0, op = 0;
	uint64_t val = 0;
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "object", false, &object) ||
	    !arg_u32(c, "option", true, &option) || !arg_u32(c, "option_op", false, &op) ||
	    !arg_u64(c, "val", false, UINT64_MAX, &val))
		return;
	if (op > 0xffff) {
		badreq(c, "argument 'option_op' out of range [0, 65535]");
		return;
	}
	struct iommu_option o = { .size = sizeof o, .option_id = option, .op = (uint16_t)op,
				  .object_id = object, .val64 = val };
	if (iommufd_ioctl(c, fd, IOMMU_OPTION, &o, "IOMMU_OPTION") == 0)
		f_u64(c, "val", o.val64);
#endif
}

static void op_ioas_map(struct ctx *c)
{
#ifndef HAVE_IOMMUFD
	unsupported(c, "IOMMU_IOAS_MAP");
#else
	int fd;
	uint32_t ioas = 0;
	uint64_t length = 0, iova = 0;
	/* FIXED_IOVA when an iova is given; READABLE|WRITEABLE unless flags say otherwise */
	uint32_t flags = (1u << 1) | (1u << 2);
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "ioas", true, &ioas) ||
	    !arg_u64(c, "length", true, UINT64_MAX, &length) || !arg_u64(c, "iova", false, UINT64_MAX, &iova))
		return;
	if (has_arg(c, "iova"))
		flags |= 1u << 0;
	if (!arg_u32(c, "flags", false, &flags))
		return;
	void *va;
	if (!mapping_memory(c, length, &va))
		return;
	struct iommu_ioas_map m = { .size = sizeof m, .flags = flags, .ioas_id = ioas,
				    .user_va = (uint64_t)(uintptr_t)va, .length = length, .iova = iova };
	if (iommufd_ioctl(c, fd, IOMMU_IOAS_MAP, &m, "IOMMU_IOAS_MAP") == 0)
		f_u64(c, "iova", m.iova);
	/* the memory stays, also on failure, so a retry can reuse it by address */
	f_u64(c, "addr", (uint64_t)(uintptr_t)va);
#endif
}

static void op_ioas_unmap(struct ctx *c)
{
#ifndef HAVE_IOMMUFD
	unsupported(c, "IOMMU_IOAS_UNMAP");
#else
	int fd;
	uint32_t ioas = 0;
	uint64_t iova = 0, length = 0;
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "ioas", true, &ioas) ||
	    !arg_u64(c, "iova", true, UINT64_MAX, &iova) || !arg_u64(c, "length", true, UINT64_MAX, &length))
		return;
	struct iommu_ioas_unmap u = { .size = sizeof u, .ioas_id = ioas, .iova = iova, .length = length };
	if (iommufd_ioctl(c, fd, IOMMU_IOAS_UNMAP, &u, "IOMMU_IOAS_UNMAP") == 0)
		f_u64(c, "length", u.length);
#endif
}

static void op_destroy(struct ctx *c)
{
#ifndef HAVE_IOMMUFD
	unsupported(c, "IOMMU_DESTROY");
#else
	int fd;
	uint32_t id = 0;
	/* "object", not "id": "id" is the request's own */
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "object", true, &id))
		return;
	struct iommu_destroy d = { .size = sizeof d, .id = id };
	iommufd_ioctl(c, fd, IOMMU_DESTROY, &d, "IOMMU_DESTROY");
#endif
}

/*
 * struct iommu_hw_info as laid out since 6.7 (40 bytes in every version): the 6.15 uAPI split the
 * u32 after out_data_type into out_max_pasid_log2 + __reserved[3], so a private copy lets the field
 * be read whatever headers the agent was built against. Source: include/uapi/linux/iommufd.h (7.2).
 */
struct agent_hw_info {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t data_len;
	uint64_t data_uptr;
	uint32_t data_type; /* in_data_type with IOMMU_HW_INFO_FLAG_INPUT_TYPE (7.2), out_data_type */
	uint8_t out_max_pasid_log2;
	uint8_t reserved[3];
	uint64_t out_capabilities;
};
_Static_assert(sizeof(struct agent_hw_info) == 40, "iommu_hw_info is 40 bytes");

static void op_get_hw_info(struct ctx *c)
{
#ifndef HAVE_HW_INFO
	unsupported(c, "IOMMU_GET_HW_INFO");
#else
	int fd;
	uint32_t dev_id = 0, flags = 0, in_type = 0, data_len = 64;
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "dev_id", true, &dev_id) ||
	    !arg_u32(c, "flags", false, &flags) || !arg_u32(c, "in_data_type", false, &in_type) ||
	    !arg_u32(c, "data_len", false, &data_len))
		return;
	if (data_len > 4096) {
		badreq(c, "argument 'data_len' out of range [0, 4096]");
		return;
	}
	uint8_t data[4096];
	memset(data, 0, sizeof data);
	struct agent_hw_info h = { .size = sizeof h, .flags = flags, .dev_id = dev_id, .data_len = data_len,
				   .data_uptr = (uint64_t)(uintptr_t)data, .data_type = in_type };
	if (iommufd_ioctl(c, fd, IOMMU_GET_HW_INFO, &h, "IOMMU_GET_HW_INFO") < 0)
		return;
	f_u64(c, "type", h.data_type);
	f_u64(c, "capabilities", h.out_capabilities);
	f_u64(c, "max_pasid_log2", h.out_max_pasid_log2);
	f_u64(c, "data_len", h.data_len);
	f_hex(c, "data", data, h.data_len < data_len ? h.data_len : data_len);
#endif
}

/*
 * struct iommu_hwpt_alloc as of 6.11+ (48 bytes; 6.7-6.10 end after data_uptr at 40). A larger
 * struct with a zero tail is accepted by every version. Source: include/uapi/linux/iommufd.h (7.2).
 */
struct agent_hwpt_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t pt_id;
	uint32_t out_hwpt_id;
	uint32_t reserved;
	uint32_t data_type;
	uint32_t data_len;
	uint64_t data_uptr;
	uint32_t fault_id;
	uint32_t reserved2;
};
_Static_assert(sizeof(struct agent_hwpt_alloc) == 48, "iommu_hwpt_alloc is 48 bytes");

static void op_hwpt_alloc(struct ctx *c)
{
#ifndef HAVE_DIRTY_TRACKING
	unsupported(c, "IOMMU_HWPT_SET_DIRTY_TRACKING");
#else
	int fd;
	uint32_t dev_id = 0, pt_id = 0, flags = 0, data_type = 0;
	uint8_t *data = NULL;
	size_t dlen = 0;
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "dev_id", true, &dev_id) ||
	    !arg_u32(c, "pt_id", true, &pt_id) || !arg_u32(c, "flags", false, &flags) ||
	    !arg_u32(c, "data_type", false, &data_type) || !arg_hex(c, "data", false, 4096, &data, &dlen))
		return;
	struct agent_hwpt_alloc a = { .size = sizeof a, .flags = flags, .dev_id = dev_id, .pt_id = pt_id,
				      .data_type = data_type, .data_len = (uint32_t)dlen,
				      .data_uptr = (uint64_t)(uintptr_t)data };
	if (iommufd_ioctl(c, fd, IOMMU_HWPT_ALLOC, &a, "IOMMU_HWPT_ALLOC") == 0)
		f_u64(c, "hwpt", a.out_hwpt_id);
	free(data);
#endif
}

static void op_set_dirty_tracking(struct ctx *c)
{
#ifndef HAVE_DIRTY_TRACKING
	unsupported(c, "IOMMU_HWPT_SET_DIRTY_TRACKING");
#else
	int fd;
	uint32_t hwpt = 0, flags = 0, reserved = 0;
	bool enable = false;
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "hwpt", true, &hwpt) ||
	    !arg_bool(c, "enable", true, &enable) || !arg_u32(c, "reserved", false, &reserved))
		return;
	flags = enable ? 1u : 0u; /* IOMMU_HWPT_DIRTY_TRACKING_ENABLE */
	if (!arg_u32(c, "flags", false, &flags)) /* raw override, for unknown-bit tests */
		return;
	struct iommu_hwpt_set_dirty_tracking s = { .size = sizeof s, .flags = flags, .hwpt_id = hwpt,
						   .__reserved = reserved };
	iommufd_ioctl(c, fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &s, "IOMMU_HWPT_SET_DIRTY_TRACKING");
#endif
}

static void op_get_dirty_bitmap(struct ctx *c)
{
#ifndef HAVE_DIRTY_TRACKING
	unsupported(c, "IOMMU_HWPT_GET_DIRTY_BITMAP");
#else
	int fd;
	uint32_t hwpt = 0, flags = 0, reserved = 0;
	uint64_t iova = 0, length = 0, page_size = 0, offset = 0, size = 0;
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "hwpt", true, &hwpt) ||
	    !arg_u64(c, "iova", true, UINT64_MAX, &iova) || !arg_u64(c, "length", true, UINT64_MAX, &length) ||
	    !arg_u64(c, "page_size", true, UINT64_MAX, &page_size) || !arg_u32(c, "flags", false, &flags) ||
	    !arg_u32(c, "reserved", false, &reserved) || !arg_u64(c, "bitmap_offset", false, 65536, &offset) ||
	    !arg_u64(c, "bitmap_size", false, UINT64_MAX, &size))
		return;
	/* Room for every bit the kernel may set: length / (lowest set bit of page_size) bits. */
	if (!has_arg(c, "bitmap_size")) {
		uint64_t unit = page_size ? (page_size & -page_size) : 1;
		size = bitmap_bytes(length / unit + 1);
	}
	struct bitbuf b = { 0 };
	if (!bitbuf_alloc(c, &b, size, offset))
		return;
	struct iommu_hwpt_get_dirty_bitmap g = { .size = sizeof g, .hwpt_id = hwpt, .flags = flags,
						 .__reserved = reserved, .iova = iova, .length = length,
						 .page_size = page_size, .data = (uint64_t)(uintptr_t)b.p };
	if (iommufd_ioctl(c, fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g, "IOMMU_HWPT_GET_DIRTY_BITMAP") == 0)
		f_bitmap(c, &b);
	bitbuf_free(&b);
#endif
}

/* ------------------------------------------------------------------ ops: IOMMUFD_TEST mock */

/*
 * IOMMU_TEST_CMD is not exported uAPI: it exists only with CONFIG_IOMMUFD_TEST (ENOTTY otherwise).
 * Layout and op numbers from drivers/iommu/iommufd/iommufd_test.h of Linux 7.2.13: ops 1-15 and
 * the DIRTY / MOCK_DOMAIN_FLAGS members are identical in 6.12; ops 18-21 (PASID) are 7.2 only (an
 * older kernel answers EOPNOTSUPP). The union's largest member is `dirty` (48 bytes), so the struct
 * is 72 bytes in both trees; the kernel requires at least offsetofend(last).
 */
enum {
	AGENT_TEST_OP_MOCK_DOMAIN = 2,
	AGENT_TEST_OP_MOCK_DOMAIN_REPLACE = 10,
	AGENT_TEST_OP_MOCK_DOMAIN_FLAGS = 12,
	AGENT_TEST_OP_DIRTY = 13,
	AGENT_TEST_OP_PASID_ATTACH = 18,
	AGENT_TEST_OP_PASID_REPLACE = 19,
	AGENT_TEST_OP_PASID_DETACH = 20,
	AGENT_TEST_OP_PASID_CHECK_HWPT = 21,
};

struct agent_test_cmd {
	uint32_t size;
	uint32_t op;
	uint32_t id;
	uint32_t reserved;
	union {
		struct {
			uint32_t out_stdev_id;
			uint32_t out_hwpt_id;
			uint32_t out_idev_id;
			uint32_t dev_flags;
		} mock_domain_flags;
		struct {
			uint32_t pt_id;
		} mock_domain_replace;
		struct {
			uint32_t flags;
			uint64_t iova __attribute__((aligned(8)));
			uint64_t length;
			uint64_t page_size;
			uint64_t uptr;
			uint64_t out_nr_dirty;
		} dirty;
		struct {
			uint32_t pasid;
			uint32_t pt_id; /* hwpt_id for CHECK_HWPT */
		} pasid;
		uint64_t pad[6];
	};
	uint32_t last;
};
_Static_assert(sizeof(struct agent_test_cmd) == 72, "iommu_test_cmd is 72 bytes");

#ifdef HAVE_IOMMUFD
#define AGENT_IOMMU_TEST_CMD _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32)
#endif

static void op_test_mock_domain(struct ctx *c)
{
#ifndef HAVE_IOMMUFD
	unsupported(c, "IOMMUFD_TYPE");
#else
	int fd;
	uint32_t pt_id = 0, dev_flags = 0;
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "pt_id", true, &pt_id) ||
	    !arg_u32(c, "dev_flags", false, &dev_flags))
		return;
	struct agent_test_cmd t;
	memset(&t, 0, sizeof t);
	t.size = sizeof t;
	/* MOCK_DOMAIN_FLAGS only when flags are given: the plain op is what every kernel has */
	t.op = has_arg(c, "dev_flags") ? AGENT_TEST_OP_MOCK_DOMAIN_FLAGS : AGENT_TEST_OP_MOCK_DOMAIN;
	t.id = pt_id;
	t.mock_domain_flags.dev_flags = dev_flags;
	if (iommufd_ioctl(c, fd, AGENT_IOMMU_TEST_CMD, &t, "IOMMU_TEST_CMD MOCK_DOMAIN") < 0)
		return;
	f_u64(c, "stdev_id", t.mock_domain_flags.out_stdev_id);
	f_u64(c, "hwpt_id", t.mock_domain_flags.out_hwpt_id);
	f_u64(c, "idev_id", t.mock_domain_flags.out_idev_id);
#endif
}

static void op_test_mock_replace(struct ctx *c)
{
#ifndef HAVE_IOMMUFD
	unsupported(c, "IOMMUFD_TYPE");
#else
	int fd;
	uint32_t stdev = 0, pt_id = 0;
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "stdev_id", true, &stdev) ||
	    !arg_u32(c, "pt_id", true, &pt_id))
		return;
	struct agent_test_cmd t;
	memset(&t, 0, sizeof t);
	t.size = sizeof t;
	t.op = AGENT_TEST_OP_MOCK_DOMAIN_REPLACE;
	t.id = stdev;
	t.mock_domain_replace.pt_id = pt_id;
	if (iommufd_ioctl(c, fd, AGENT_IOMMU_TEST_CMD, &t, "IOMMU_TEST_CMD MOCK_DOMAIN_REPLACE") == 0)
		f_u64(c, "pt_id", t.mock_domain_replace.pt_id);
#endif
}

static void op_test_dirty(struct ctx *c)
{
#ifndef HAVE_IOMMUFD
	unsupported(c, "IOMMUFD_TYPE");
#else
	int fd;
	uint32_t hwpt = 0;
	uint64_t iova = 0, length = 0, page_size = 0;
	uint8_t *bits = NULL;
	size_t blen = 0;
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "hwpt", true, &hwpt) ||
	    !arg_u64(c, "iova", true, UINT64_MAX, &iova) || !arg_u64(c, "length", true, UINT64_MAX, &length) ||
	    !arg_u64(c, "page_size", true, UINT64_MAX, &page_size) ||
	    !arg_hex(c, "bitmap", true, MAX_LINE, &bits, &blen))
		return;
	/* The kernel reads DIV_ROUND_UP(length/page_size, 8) bytes: pad with zeros so it never reads past. */
	uint64_t need = page_size ? bitmap_bytes(length / page_size) : 0;
	size_t alloc = blen > need ? blen : (size_t)need;
	if (need > (64ull << 20)) {
		free(bits);
		badreq(c, "length/page_size needs a %" PRIu64 "-byte bitmap, beyond the agent's limit", need);
		return;
	}
	uint8_t *buf = xcalloc(alloc + 8);
	memcpy(buf, bits, blen);
	struct agent_test_cmd t;
	memset(&t, 0, sizeof t);
	t.size = sizeof t;
	t.op = AGENT_TEST_OP_DIRTY;
	t.id = hwpt;
	t.dirty.iova = iova;
	t.dirty.length = length;
	t.dirty.page_size = page_size;
	t.dirty.uptr = (uint64_t)(uintptr_t)buf;
	if (iommufd_ioctl(c, fd, AGENT_IOMMU_TEST_CMD, &t, "IOMMU_TEST_CMD DIRTY") == 0)
		f_u64(c, "out_nr_dirty", t.dirty.out_nr_dirty);
	free(buf);
	free(bits);
#endif
}

static void op_test_pasid(struct ctx *c)
{
#ifndef HAVE_IOMMUFD
	unsupported(c, "IOMMUFD_TYPE");
#else
	int fd;
	uint32_t stdev = 0, pasid = 0, pt_id = 0;
	const char *what = NULL;
	if (!arg_fd(c, "iommufd", &fd) || !arg_u32(c, "stdev_id", true, &stdev) ||
	    !arg_str(c, "action", true, &what) || !arg_u32(c, "pasid", true, &pasid) ||
	    !arg_u32(c, "pt_id", false, &pt_id))
		return;
	static const struct {
		const char *name;
		uint32_t op;
		bool pt;
	} m[] = {
		{ "attach", AGENT_TEST_OP_PASID_ATTACH, true },
		{ "replace", AGENT_TEST_OP_PASID_REPLACE, true },
		{ "detach", AGENT_TEST_OP_PASID_DETACH, false },
		{ "check", AGENT_TEST_OP_PASID_CHECK_HWPT, true },
	};
	int k = -1;
	for (int i = 0; i < (int)(sizeof m / sizeof m[0]); i++)
		if (strcmp(m[i].name, what) == 0)
			k = i;
	if (k < 0) {
		badreq(c, "argument 'action' must be attach, replace, detach or check");
		return;
	}
	if (m[k].pt && !has_arg(c, "pt_id") && m[k].op != AGENT_TEST_OP_PASID_CHECK_HWPT) {
		badreq(c, "missing argument 'pt_id'");
		return;
	}
	struct agent_test_cmd t;
	memset(&t, 0, sizeof t);
	t.size = sizeof t;
	t.op = m[k].op;
	t.id = stdev;
	t.pasid.pasid = pasid;
	t.pasid.pt_id = pt_id;
	char where[64];
	snprintf(where, sizeof where, "IOMMU_TEST_CMD PASID_%s", what);
	if (iommufd_ioctl(c, fd, AGENT_IOMMU_TEST_CMD, &t, where) == 0 && m[k].pt)
		f_u64(c, "pt_id", t.pasid.pt_id);
#endif
}

/* ------------------------------------------------------------------ ops: VFIO cdev attach/detach (PASID) */

/*
 * Raw layouts of vfio_device_{attach,detach}_iommufd_pt as of 7.2 ({argsz, flags, pt_id, pasid} and
 * {argsz, flags, pasid}). Before 7.2 the structs end after pt_id / flags and flags must be 0; sending
 * the 7.2 layout to such a kernel is exactly the probe the uAPI documents (EINVAL on the flag), so
 * these ops work the same whatever headers the agent was built with. argsz defaults to the 7.2 size.
 */
static void op_vfio_attach_pt(struct ctx *c)
{
#ifndef HAVE_DEVICE_CDEV
	unsupported(c, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
#else
	int dev;
	uint32_t pt_id = 0, flags = 0, pasid = 0, argsz = 16;
	if (!arg_fd(c, "dev", &dev) || !arg_u32(c, "pt_id", true, &pt_id) ||
	    !arg_u32(c, "flags", false, &flags) || !arg_u32(c, "pasid", false, &pasid) ||
	    !arg_u32(c, "argsz", false, &argsz))
		return;
	uint32_t a[16] = { argsz, flags, pt_id, pasid };
	if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, a) < 0) {
		set_errno(c, errno, "ioctl VFIO_DEVICE_ATTACH_IOMMUFD_PT");
		return;
	}
	f_u64(c, "pt_id", a[2]);
#endif
}

static void op_vfio_detach_pt(struct ctx *c)
{
#ifndef HAVE_DEVICE_CDEV
	unsupported(c, "VFIO_DEVICE_DETACH_IOMMUFD_PT");
#else
	int dev;
	uint32_t flags = 0, pasid = 0, argsz = 12;
	if (!arg_fd(c, "dev", &dev) || !arg_u32(c, "flags", false, &flags) ||
	    !arg_u32(c, "pasid", false, &pasid) || !arg_u32(c, "argsz", false, &argsz))
		return;
	uint32_t d[16] = { argsz, flags, pasid };
	if (ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, d) < 0)
		set_errno(c, errno, "ioctl VFIO_DEVICE_DETACH_IOMMUFD_PT");
#endif
}

/* ------------------------------------------------------------------ ops: type1 container */

static void op_container_info(struct ctx *c)
{
	int container;
	if (!arg_fd(c, "container", &container))
		return;
	uint64_t buf[512];
	memset(buf, 0, sizeof buf);
	struct vfio_iommu_type1_info *info = (struct vfio_iommu_type1_info *)buf;
	info->argsz = sizeof buf;
	if (ioctl(container, VFIO_IOMMU_GET_INFO, info) < 0) {
		set_errno(c, errno, "ioctl VFIO_IOMMU_GET_INFO");
		return;
	}
	f_u64(c, "flags", info->flags);
	f_u64(c, "iova_pgsizes", info->iova_pgsizes);
	bool mig = false;
	if ((info->flags & VFIO_IOMMU_INFO_CAPS) && info->cap_offset) {
		uint32_t off = info->cap_offset;
		for (int guard = 0; off && off + sizeof(struct vfio_info_cap_header) <= sizeof buf && guard < 64; guard++) {
			struct vfio_info_cap_header *h = (struct vfio_info_cap_header *)((uint8_t *)buf + off);
			if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION &&
			    off + sizeof(struct vfio_iommu_type1_info_cap_migration) <= sizeof buf) {
				struct vfio_iommu_type1_info_cap_migration *m = (void *)h;
				mig = true;
				f_u64(c, "mig_version", h->version);
				f_u64(c, "mig_flags", m->flags);
				f_u64(c, "mig_pgsize_bitmap", m->pgsize_bitmap);
				f_u64(c, "mig_max_dirty_bitmap_size", m->max_dirty_bitmap_size);
			}
			off = h->next;
		}
	}
	f_bool(c, "migration_cap", mig);
}

static void op_container_map(struct ctx *c)
{
	int container;
	uint64_t iova = 0, size = 0;
	uint32_t flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
	if (!arg_fd(c, "container", &container) || !arg_u64(c, "iova", true, UINT64_MAX, &iova) ||
	    !arg_u64(c, "size", true, UINT64_MAX, &size) || !arg_u32(c, "flags", false, &flags))
		return;
	void *va;
	if (!mapping_memory(c, size, &va))
		return;
	struct vfio_iommu_type1_dma_map m = { .argsz = sizeof m, .flags = flags,
					      .vaddr = (uint64_t)(uintptr_t)va, .iova = iova, .size = size };
	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &m) < 0)
		set_errno(c, errno, "ioctl VFIO_IOMMU_MAP_DMA");
	f_u64(c, "addr", (uint64_t)(uintptr_t)va);
}

/*
 * VFIO_IOMMU_UNMAP_DMA; with `bitmap_pgsize` it sets VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP and
 * appends a struct vfio_bitmap of `bitmap_size` bytes (default: enough for size/pgsize bits).
 */
static void op_container_unmap(struct ctx *c)
{
	int container;
	uint64_t iova = 0, size = 0, pgsize = 0, bsize = 0;
	uint32_t flags = 0;
	if (!arg_fd(c, "container", &container) || !arg_u64(c, "iova", true, UINT64_MAX, &iova) ||
	    !arg_u64(c, "size", true, UINT64_MAX, &size) || !arg_u32(c, "flags", false, &flags) ||
	    !arg_u64(c, "bitmap_pgsize", false, UINT64_MAX, &pgsize) ||
	    !arg_u64(c, "bitmap_size", false, UINT64_MAX, &bsize))
		return;
	bool with_bitmap = has_arg(c, "bitmap_pgsize");
	struct bitbuf b = { 0 };
	uint64_t buf[8] = { 0 };
	struct vfio_iommu_type1_dma_unmap *u = (struct vfio_iommu_type1_dma_unmap *)buf;
	u->argsz = sizeof *u;
	u->flags = flags;
	u->iova = iova;
	u->size = size;
	if (with_bitmap) {
		if (!has_arg(c, "bitmap_size"))
			bsize = pgsize ? bitmap_bytes(size / pgsize) : 8;
		if (!bitbuf_alloc(c, &b, bsize, 0))
			return;
		if (!has_arg(c, "flags"))
			u->flags |= VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
		struct vfio_bitmap *vb = (struct vfio_bitmap *)u->data;
		vb->pgsize = pgsize;
		vb->size = bsize;
		vb->data = (void *)b.p;
		u->argsz = sizeof *u + sizeof *vb;
	}
	if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, u) < 0) {
		set_errno(c, errno, "ioctl VFIO_IOMMU_UNMAP_DMA");
	} else {
		f_u64(c, "size", u->size);
		if (with_bitmap)
			f_bitmap(c, &b);
	}
	bitbuf_free(&b);
}

/*
 * VFIO_IOMMU_DIRTY_PAGES on a container fd (same ioctl number as VFIO_DEVICE_FEATURE: never issue it
 * on a device fd). action start|stop|get_bitmap sets the flag; `flags` overrides it raw; `argsz`
 * overrides the computed size (8, or 8 + 40 for get_bitmap).
 */
static void op_container_dirty(struct ctx *c)
{
	int container;
	const char *what = NULL;
	uint32_t flags = 0, argsz = 0;
	uint64_t iova = 0, size = 0, pgsize = 0, bsize = 0;
	if (!arg_fd(c, "container", &container) || !arg_str(c, "action", true, &what) ||
	    !arg_u64(c, "iova", false, UINT64_MAX, &iova) || !arg_u64(c, "size", false, UINT64_MAX, &size) ||
	    !arg_u64(c, "pgsize", false, UINT64_MAX, &pgsize) ||
	    !arg_u64(c, "bitmap_size", false, UINT64_MAX, &bsize))
		return;
	bool get = false;
	if (strcmp(what, "start") == 0)
		flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_START;
	else if (strcmp(what, "stop") == 0)
		flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP;
	else if (strcmp(what, "get_bitmap") == 0) {
		flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
		get = true;
	} else {
		badreq(c, "argument 'action' must be start, stop or get_bitmap");
		return;
	}
	argsz = get ? (uint32_t)(sizeof(struct vfio_iommu_type1_dirty_bitmap) +
				 sizeof(struct vfio_iommu_type1_dirty_bitmap_get))
		    : (uint32_t)sizeof(struct vfio_iommu_type1_dirty_bitmap);
	if (!arg_u32(c, "flags", false, &flags) || !arg_u32(c, "argsz", false, &argsz))
		return;
	struct bitbuf b = { 0 };
	if (get) {
		if (!has_arg(c, "bitmap_size"))
			bsize = pgsize ? bitmap_bytes(size / pgsize) : 8;
		/* A huge claimed size is only reserved address space: the kernel rejects it before writing. */
		if (!bitbuf_alloc(c, &b, bsize, 0))
			return;
	}
	uint64_t buf[16] = { 0 };
	struct vfio_iommu_type1_dirty_bitmap *d = (struct vfio_iommu_type1_dirty_bitmap *)buf;
	d->argsz = argsz;
	d->flags = flags;
	if (get) {
		struct vfio_iommu_type1_dirty_bitmap_get *r = (struct vfio_iommu_type1_dirty_bitmap_get *)d->data;
		r->iova = iova;
		r->size = size;
		r->bitmap.pgsize = pgsize;
		r->bitmap.size = bsize;
		r->bitmap.data = (void *)b.p;
	}
	if (ioctl(container, VFIO_IOMMU_DIRTY_PAGES, d) < 0)
		set_errno(c, errno, "ioctl VFIO_IOMMU_DIRTY_PAGES");
	else if (get)
		f_bitmap(c, &b);
	bitbuf_free(&b);
}

/* ------------------------------------------------------------------ ops: device DMA logging */

/* "iova:len,iova:len" (decimal or 0x-hex) → array of {iova, length} pairs. */
static bool parse_ranges(struct ctx *c, const char *s, uint64_t **out, uint32_t *n)
{
	uint32_t cap = 0, cnt = 0;
	uint64_t *v = NULL;
	const char *p = s;
	while (*p) {
		char *e;
		errno = 0;
		unsigned long long a = strtoull(p, &e, 0);
		if (e == p || *e != ':' || errno)
			goto bad;
		p = e + 1;
		unsigned long long l = strtoull(p, &e, 0);
		if (e == p || (*e != ',' && *e) || errno)
			goto bad;
		p = *e ? e + 1 : e;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			if (cap > 65536)
				goto bad;
			uint64_t *nv = realloc(v, (size_t)cap * 16);
			if (!nv)
				die_oom();
			v = nv;
		}
		v[2 * cnt] = a;
		v[2 * cnt + 1] = l;
		cnt++;
	}
	*out = v;
	*n = cnt;
	return true;
bad:
	free(v);
	return badreq(c, "argument 'ranges' must be \"iova:length,...\" (at most 65536 ranges)");
}

static void op_dma_logging(struct ctx *c)
{
#ifndef VFIO_DEVICE_FEATURE_DMA_LOGGING_START
	unsupported(c, "VFIO_DEVICE_FEATURE_DMA_LOGGING_START");
#else
	int dev;
	const char *what = NULL, *rs = "";
	uint64_t page_size = 0, iova = 0, length = 0, bsize = 0;
	uint32_t num = 0, flags = 0, argsz = 0;
	if (!arg_fd(c, "dev", &dev) || !arg_str(c, "action", true, &what) ||
	    !arg_u64(c, "page_size", false, UINT64_MAX, &page_size) || !arg_str(c, "ranges", false, &rs) ||
	    !arg_u64(c, "iova", false, UINT64_MAX, &iova) || !arg_u64(c, "length", false, UINT64_MAX, &length) ||
	    !arg_u64(c, "bitmap_size", false, UINT64_MAX, &bsize))
		return;
	int kind;
	size_t plen;
	if (strcmp(what, "start") == 0) {
		kind = 0;
		flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START;
		plen = sizeof(struct vfio_device_feature_dma_logging_control);
	} else if (strcmp(what, "stop") == 0) {
		kind = 1;
		flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP;
		plen = 0;
	} else if (strcmp(what, "report") == 0) {
		kind = 2;
		flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT;
		plen = sizeof(struct vfio_device_feature_dma_logging_report);
	} else {
		badreq(c, "argument 'action' must be start, stop or report");
		return;
	}
	argsz = (uint32_t)(sizeof(struct vfio_device_feature) + plen);
	if (!arg_u32(c, "flags", false, &flags) || !arg_u32(c, "argsz", false, &argsz))
		return;
	uint64_t *ranges = NULL;
	uint32_t nr = 0;
	if (!parse_ranges(c, rs, &ranges, &nr))
		return;
	num = nr;
	if (!arg_u32(c, "num_ranges", false, &num)) {
		free(ranges);
		return;
	}
	/* The kernel reads num_ranges entries (at most 256 before E2BIG): give it zeroed room for all. */
	size_t rcount = num > nr ? (num < 65536 ? num : 65536) : nr;
	uint64_t *rbuf = xcalloc((rcount ? rcount : 1) * 16);
	if (nr)
		memcpy(rbuf, ranges, (size_t)nr * 16);
	free(ranges);
	struct bitbuf b = { 0 };
	uint64_t buf[16] = { 0 };
	struct vfio_device_feature *f = (struct vfio_device_feature *)buf;
	f->argsz = argsz;
	f->flags = flags;
	if (kind == 0) {
		struct vfio_device_feature_dma_logging_control *ctl = (void *)f->data;
		ctl->page_size = page_size;
		ctl->num_ranges = num;
		ctl->ranges = (uint64_t)(uintptr_t)rbuf;
	} else if (kind == 2) {
		if (!has_arg(c, "bitmap_size")) {
			uint64_t unit = page_size ? (page_size & -page_size) : 1;
			bsize = bitmap_bytes(length / unit + 1);
		}
		if (!bitbuf_alloc(c, &b, bsize, 0)) {
			free(rbuf);
			return;
		}
		struct vfio_device_feature_dma_logging_report *rep = (void *)f->data;
		rep->iova = iova;
		rep->length = length;
		rep->page_size = page_size;
		rep->bitmap = (uint64_t)(uintptr_t)b.p;
	}
	if (ioctl(dev, VFIO_DEVICE_FEATURE, f) < 0) {
		set_errno(c, errno, "ioctl VFIO_DEVICE_FEATURE");
	} else if (kind == 0) {
		struct vfio_device_feature_dma_logging_control *ctl = (void *)f->data;
		f_u64(c, "page_size", ctl->page_size);
	} else if (kind == 2) {
		f_bitmap(c, &b);
	}
	bitbuf_free(&b);
	free(rbuf);
#endif
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
	{ "open_group", op_open_group, "group device iommu_type" },
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
	{ "pwrite", op_pwrite, "fd offset data" },
	{ "lseek", op_lseek, "fd offset whence" },
	{ "poll", op_poll, "fd events timeout_ms" },
	{ "reset", op_reset, "dev" },
	{ "region_info", op_region_info, "dev index" },
	{ "region_read", op_region_read, "dev index offset size" },
	{ "region_write", op_region_write, "dev index offset size value" },
	{ "fd_ioctl", op_fd_ioctl, "fd cmd payload arg" },
	{ "mem_alloc", op_mem_alloc, "length hugetlb" },
	{ "mem_free", op_mem_free, "addr length" },
	{ "mem_pfn", op_mem_pfn, "addr" },
	{ "mem_read", op_mem_read, "addr length" },
	{ "mem_write", op_mem_write, "addr data" },
	{ "iommufd_open", op_iommufd_open, "" },
	{ "ioas_alloc", op_ioas_alloc, "iommufd" },
	{ "ioas_option", op_ioas_option, "iommufd object option option_op val" },
	{ "ioas_map", op_ioas_map, "iommufd ioas length iova flags addr hugetlb" },
	{ "ioas_unmap", op_ioas_unmap, "iommufd ioas iova length" },
	{ "destroy", op_destroy, "iommufd object" },
	{ "get_hw_info", op_get_hw_info, "iommufd dev_id flags in_data_type data_len" },
	{ "hwpt_alloc", op_hwpt_alloc, "iommufd dev_id pt_id flags data_type data" },
	{ "set_dirty_tracking", op_set_dirty_tracking, "iommufd hwpt enable flags reserved" },
	{ "get_dirty_bitmap", op_get_dirty_bitmap,
	  "iommufd hwpt iova length page_size flags reserved bitmap_offset bitmap_size" },
	{ "test_mock_domain", op_test_mock_domain, "iommufd pt_id dev_flags" },
	{ "test_mock_replace", op_test_mock_replace, "iommufd stdev_id pt_id" },
	{ "test_dirty", op_test_dirty, "iommufd hwpt iova length page_size bitmap" },
	{ "test_pasid", op_test_pasid, "iommufd stdev_id action pasid pt_id" },
	{ "vfio_attach_pt", op_vfio_attach_pt, "dev pt_id flags pasid argsz" },
	{ "vfio_detach_pt", op_vfio_detach_pt, "dev flags pasid argsz" },
	{ "container_info", op_container_info, "container" },
	{ "container_map", op_container_map, "container iova size flags addr hugetlb" },
	{ "container_unmap", op_container_unmap, "container iova size flags bitmap_pgsize bitmap_size" },
	{ "container_dirty", op_container_dirty, "container action iova size pgsize bitmap_size flags argsz" },
	{ "dma_logging", op_dma_logging,
	  "dev action page_size ranges num_ranges iova length bitmap_size flags argsz" },
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
