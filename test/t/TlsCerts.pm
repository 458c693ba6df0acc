# TlsCerts: certificates for lockext's TLS tests, made with the openssl
# command in a directory of the test: a CA, server certificates (for
# 127.0.0.1, for another host name, expired), a client certificate, and a
# second CA that signed none of them.  EC keys: quick to make.  The expired
# one is signed two days in the past (faketime), valid for one day: OpenSSL
# 3.4 and later refuse "-days -1", and 3.0 (Debian 12) lacks -not_after.
package TlsCerts;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Utils;

our @EXPORT = qw(make_test_certs);

sub openssl
{
	run_openssl([], @_);
}

# openssl with a command before it (faketime ...).
sub run_openssl
{
	my $pre = shift;
	my @cmd = (@$pre, 'openssl', @_);
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err)
	  or die "openssl @_ failed: $err";
}

# A key and a certificate signed by $ca (or self-signed without one).
sub make_cert
{
	my ($dir, $name, %o) = @_;
	my $key = "$dir/$name.key";
	my $days = $o{expired} ? 1 : 30;
	openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
		'-out', $key);
	chmod 0600, $key;
	if (!$o{ca})
	{
		openssl('req', '-x509', '-new', '-key', $key, '-subj', "/CN=$o{cn}",
			'-days', $days, '-out', "$dir/$name.crt");
		return;
	}
	my $ext = "$dir/$name.ext";
	open my $fh, '>', $ext or die "cannot write $ext: $!";
	print $fh "subjectAltName = $o{san}\n" if $o{san};
	print $fh "extendedKeyUsage = $o{usage}\n";
	close $fh;
	openssl('req', '-new', '-key', $key, '-subj', "/CN=$o{cn}", '-out', "$dir/$name.csr");
	run_openssl($o{expired} ? [ 'faketime', '-f', '-2d' ] : [],
		'x509', '-req', '-in', "$dir/$name.csr", '-CA', "$dir/$o{ca}.crt",
		'-CAkey', "$dir/$o{ca}.key", '-CAcreateserial', '-days', $days,
		'-extfile', $ext, '-out', "$dir/$name.crt");
}

# Everything in $dir; returns $dir.
sub make_test_certs
{
	my ($dir) = @_;
	make_cert($dir, 'ca', cn => 'lockext test CA');
	make_cert($dir, 'ca2', cn => 'another CA');
	make_cert($dir, 'server', ca => 'ca', cn => 'redis test server',
		san => 'DNS:localhost,IP:127.0.0.1', usage => 'serverAuth');
	make_cert($dir, 'other', ca => 'ca', cn => 'other.example',
		san => 'DNS:other.example', usage => 'serverAuth');
	make_cert($dir, 'expired', ca => 'ca', cn => 'redis test server',
		san => 'DNS:localhost,IP:127.0.0.1', usage => 'serverAuth', expired => 1);
	make_cert($dir, 'client', ca => 'ca', cn => 'lockext', usage => 'clientAuth');
	return $dir;
}

1;
