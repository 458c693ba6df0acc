/*-------------------------------------------------------------------------
 *
 * redis_tls.c
 *	  TLS for Redis connections (rediss:// URLs), with OpenSSL.
 *
 * Debian 12's hiredis (0.14) has no TLS, so lockext owns the transport of
 * a rediss:// connection: hiredis still opens the socket, formats the
 * commands into its output buffer and parses the replies (its reader);
 * here the bytes go through non-blocking SSL_write/SSL_read, and the
 * handshake runs step by step.  Every step that would block reports which
 * socket condition it waits for (the node's tls_* fields), and the
 * connection layer waits for it on the latch with its usual time bounds,
 * so cancel, termination and the connect timeout work during a handshake.
 *
 * The options follow libpq: sslmode require (encrypt; verify the chain
 * only when sslrootcert is given), verify-ca, verify-full (and the host
 * name; the default); sslrootcert (default: the system's CAs), sslcert
 * and sslkey (a client certificate), sslsni.  Files are read at each
 * connection, so renewed certificates are picked up; relative names are
 * in the data directory (a backend's working directory).  A key file
 * that group or others may read is refused, as libpq does.
 *
 * Like the rest of the connection layer, nothing here raises an ERROR or
 * pallocs (OpenSSL uses malloc): failures are messages for the caller.
 * OpenSSL's error queue is per thread and shared with the server's own
 * TLS, so it is cleared before each call whose errors we read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "storage/latch.h"

#include "redis_conn_int.h"

/* hiredis 1.0 alone named its sds functions hi_sds* (1.1 went back) */
#if HIREDIS_MAJOR == 1 && HIREDIS_MINOR == 0
#define sdslen hi_sdslen
#define sdsrange hi_sdsrange
#endif

/* The reason of the first error in OpenSSL's queue, or NULL. */
static const char *
queued_error(unsigned long *code)
{
	unsigned long e = ERR_get_error();

	*code = e;
	if (e == 0)
		return NULL;
	return ERR_reason_error_string(e) ? ERR_reason_error_string(e) :
		"unknown TLS error";
}

/* libpq's rule for a private key file: no access for group or others. */
static bool
key_file_ok(const char *path, char *why, size_t whylen)
{
	struct stat st;

	if (stat(path, &st) != 0)
	{
		snprintf(why, whylen, "could not open private key file \"%s\": %s",
				 path, strerror(errno));
		return false;
	}
	if (!S_ISREG(st.st_mode))
	{
		snprintf(why, whylen, "private key file \"%s\" is not a regular file",
				 path);
		return false;
	}
	if ((st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO))) ||
		(st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
	{
		snprintf(why, whylen, "private key file \"%s\" has group or world access; it must have permissions u=rw (0600) or less if owned by the server's user, or u=rw,g=r (0640) or less if owned by root",
				 path);
		return false;
	}
	return true;
}

/* The settings of a connection to url: CAs, verification, client cert. */
static SSL_CTX *
make_context(const RedisUrl *url, char *why, size_t whylen)
{
	SSL_CTX    *ctx;
	unsigned long code;
	const char *reason;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
	{
		reason = queued_error(&code);
		snprintf(why, whylen, "could not create a TLS context: %s",
				 reason ? reason : "out of memory");
		return NULL;
	}
	(void) SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* the output buffer grows and moves while a write waits for the socket */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* one recv() for what has arrived, not one per record header and body */
	SSL_CTX_set_read_ahead(ctx, 1);

	/* verify-ca and verify-full verify; require does when given a CA file */
	if (url->sslmode != REDIS_SSL_REQUIRE || url->sslrootcert[0] != '\0')
	{
		bool		loaded;

		if (url->sslrootcert[0] == '\0' || strcmp(url->sslrootcert, "system") == 0)
			loaded = SSL_CTX_set_default_verify_paths(ctx) == 1;
		else
			loaded = SSL_CTX_load_verify_locations(ctx, url->sslrootcert, NULL) == 1;
		if (!loaded)
		{
			reason = queued_error(&code);
			snprintf(why, whylen, "could not read root certificate file \"%s\": %s",
					 url->sslrootcert[0] ? url->sslrootcert : "(system)",
					 reason ? reason : strerror(errno));
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);

	if (url->sslcert[0] != '\0')
	{
		if (SSL_CTX_use_certificate_chain_file(ctx, url->sslcert) != 1)
		{
			reason = queued_error(&code);
			snprintf(why, whylen, "could not load client certificate file \"%s\": %s",
					 url->sslcert, reason ? reason : strerror(errno));
			goto fail;
		}
		if (!key_file_ok(url->sslkey, why, whylen))
			goto fail;
		if (SSL_CTX_use_PrivateKey_file(ctx, url->sslkey, SSL_FILETYPE_PEM) != 1 ||
			SSL_CTX_check_private_key(ctx) != 1)
		{
			reason = queued_error(&code);
			snprintf(why, whylen, "could not load private key file \"%s\": %s",
					 url->sslkey, reason ? reason : "does not match the certificate");
			goto fail;
		}
	}
	return ctx;

fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static bool
is_ip_address(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 ||
		inet_pton(AF_INET6, host, buf) == 1;
}

/*
 * Set up TLS on the node's socket, now connected: the handshake starts
 * with rtls_handshake().  False with why filled on failure.
 */
bool
rtls_start(RedisNode *node, char *why, size_t whylen)
{
	const RedisUrl *url = &node->url;
	bool		ip = is_ip_address(url->host);
	SSL_CTX    *ctx = make_context(url, why, whylen);
	SSL		   *ssl;
	bool		ok;

	if (ctx == NULL)
		return false;
	ERR_clear_error();
	ssl = SSL_new(ctx);
	ok = ssl != NULL && SSL_set_fd(ssl, node->ctx->fd) == 1;
	/* SNI names a host, never an address (RFC 6066) */
	if (ok && url->sslsni && !ip)
		ok = SSL_set_tlsext_host_name(ssl, url->host) == 1;
	if (ok && url->sslmode == REDIS_SSL_VERIFY_FULL)
		ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url->host) == 1 :
			SSL_set1_host(ssl, url->host) == 1;
	if (!ok)
	{
		unsigned long code;
		const char *reason = queued_error(&code);

		snprintf(why, whylen, "could not set up TLS: %s",
				 reason ? reason : "out of memory");
		if (ssl != NULL)
			SSL_free(ssl);
		SSL_CTX_free(ctx);
		return false;
	}
	SSL_set_connect_state(ssl);
	node->tls_ctx = ctx;
	node->tls = ssl;
	node->tls_handshake_wait = WL_SOCKET_WRITEABLE;
	node->tls_write_wants_read = false;
	node->tls_read_wants_write = false;
	node->tls_write_len = 0;
	return true;
}

/* Why a TLS call that returned ret failed, for a message. */
static void
tls_failure(RedisNode *node, int ret, int err, char *why, size_t whylen)
{
	unsigned long code;
	const char *reason = queued_error(&code);
	long		v;

	if (reason != NULL && ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
		(v = SSL_get_verify_result(node->tls)) != X509_V_OK)
	{
		switch (v)
		{
			case X509_V_ERR_HOSTNAME_MISMATCH:
			case X509_V_ERR_IP_ADDRESS_MISMATCH:
				snprintf(why, whylen, "server certificate is not for host \"%s\" (sslmode verify-full checks the name; verify-ca does not)",
						 node->url.host);
				return;
			case X509_V_ERR_CERT_HAS_EXPIRED:
				snprintf(why, whylen, "server certificate has expired");
				return;
			case X509_V_ERR_CERT_NOT_YET_VALID:
				snprintf(why, whylen, "server certificate is not yet valid");
				return;
			case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
			case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
			case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
			case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
			case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
				snprintf(why, whylen, "server certificate is signed by an unknown certificate authority (%s; sslrootcert is %s)",
						 X509_verify_cert_error_string(v),
						 node->url.sslrootcert[0] ? node->url.sslrootcert : "the system's CAs");
				return;
			default:
				snprintf(why, whylen, "server certificate verification failed: %s",
						 X509_verify_cert_error_string(v));
				return;
		}
	}
	if (reason != NULL)
	{
		if (ERR_GET_REASON(code) == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED)
			snprintf(why, whylen, "the server requires a client certificate (set sslcert and sslkey): %s",
					 reason);
		else if (ERR_GET_REASON(code) == SSL_R_WRONG_VERSION_NUMBER)
			snprintf(why, whylen, "%s (is this a TLS port of the server?)", reason);
		else
			snprintf(why, whylen, "%s", reason);
		return;
	}
	if (err == SSL_ERROR_SYSCALL && ret < 0 && errno != 0)
		snprintf(why, whylen, "%s", strerror(errno));
	else
		snprintf(why, whylen, "the server closed the connection");
}

/*
 * One step of the handshake: 1 when done, 0 when it waits for the socket
 * (node->tls_handshake_wait says how), -1 on failure with why filled.
 */
int
rtls_handshake(RedisNode *node, char *why, size_t whylen)
{
	int			r;
	int			err;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(node->tls);
	if (r == 1)
	{
		node->tls_handshake_wait = 0;
		return 1;
	}
	err = SSL_get_error(node->tls, r);
	if (err == SSL_ERROR_WANT_READ)
	{
		node->tls_handshake_wait = WL_SOCKET_READABLE;
		return 0;
	}
	if (err == SSL_ERROR_WANT_WRITE)
	{
		node->tls_handshake_wait = WL_SOCKET_WRITEABLE;
		return 0;
	}
	tls_failure(node, r, err, why, whylen);
	return -1;
}

/*
 * A write failed on the socket: if the server said why before it closed
 * (a TLS alert, such as "certificate required"), fill why with it.
 */
static bool
alert_reason(RedisNode *node, char *why, size_t whylen)
{
	char		buf[1024];
	int			n;
	int			err;

	ERR_clear_error();
	errno = 0;
	n = SSL_read(node->tls, buf, sizeof(buf));
	err = SSL_get_error(node->tls, n);
	if (n > 0 || err != SSL_ERROR_SSL)
		return false;
	tls_failure(node, n, err, why, whylen);
	return true;
}

/*
 * Write what the socket takes of hiredis's output buffer.  *done when it
 * is empty; false with why filled when the connection failed.
 */
bool
rtls_write(RedisNode *node, bool *done, char *why, size_t whylen)
{
	redisContext *c = node->ctx;

	node->tls_write_wants_read = false;
	while (sdslen(c->obuf) > 0)
	{
		/* after a WANT_*, OpenSSL wants the same length again */
		int			len = node->tls_write_len > 0 ? node->tls_write_len :
			(int) Min(sdslen(c->obuf), 65536);
		int			n;
		int			err;

		ERR_clear_error();
		errno = 0;
		n = SSL_write(node->tls, c->obuf, len);
		if (n > 0)
		{
			sdsrange(c->obuf, n, -1);
			node->tls_write_len = 0;
			continue;
		}
		err = SSL_get_error(node->tls, n);
		if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
		{
			node->tls_write_len = len;
			node->tls_write_wants_read = (err == SSL_ERROR_WANT_READ);
			break;
		}
		/* a server that refuses us sends its reason (an alert) first */
		if (err == SSL_ERROR_SYSCALL && alert_reason(node, why, whylen))
			return false;
		tls_failure(node, n, err, why, whylen);
		return false;
	}
	*done = sdslen(c->obuf) == 0;
	return true;
}

/*
 * Read what the connection has into hiredis's reader: what the socket
 * holds and what OpenSSL read ahead.  False with why filled when the
 * connection failed or the server closed it.
 */
bool
rtls_read(RedisNode *node, char *why, size_t whylen)
{
	char		buf[16384];

	node->tls_read_wants_write = false;
	for (;;)
	{
		int			n;
		int			err;

		ERR_clear_error();
		errno = 0;
		n = SSL_read(node->tls, buf, sizeof(buf));
		if (n > 0)
		{
			if (redisReaderFeed(node->ctx->reader, buf, n) != REDIS_OK)
			{
				snprintf(why, whylen, "out of memory");
				return false;
			}
			/* more only if OpenSSL holds some, or buf was too small */
			if (SSL_has_pending(node->tls) || n == (int) sizeof(buf))
				continue;
			return true;
		}
		err = SSL_get_error(node->tls, n);
		if (err == SSL_ERROR_WANT_READ)
			return true;
		if (err == SSL_ERROR_WANT_WRITE)
		{
			node->tls_read_wants_write = true;
			return true;
		}
		tls_failure(node, n, err, why, whylen);
		return false;
	}
}

/*
 * Does OpenSSL hold data it read from the socket but we did not (the
 * socket may not say it is readable)?
 */
bool
rtls_pending(RedisNode *node)
{
	return node->tls != NULL && SSL_has_pending(node->tls);
}

/* Forget the connection's TLS state (the socket is closed by hiredis). */
void
rtls_close(RedisNode *node)
{
	if (node->tls != NULL)
		SSL_free(node->tls);
	if (node->tls_ctx != NULL)
		SSL_CTX_free(node->tls_ctx);
	node->tls = NULL;
	node->tls_ctx = NULL;
	node->tls_handshake_wait = 0;
	node->tls_write_wants_read = false;
	node->tls_read_wants_write = false;
	node->tls_write_len = 0;
}
