#!/usr/bin/perl
# release_path_check.pl - the release path never fails (design: "The release
# path"): what the commit, abort, resource-owner and exit callbacks reach
# may not palloc, raise an ERROR, attach shared memory, connect, resolve
# names, read files or create wait sets.  This proves it from the compiler's
# own call graph: every src/*.c is compiled with gcc -fcallgraph-info, the
# graph is walked from the release module's entry points (src/release.c's
# non-static functions) and from the functions the lock backends and the
# Redis layer's hooks are called through (indirect calls), and every
# function outside lockext reached must be on the allowlist below.  A call
# that is not prints the chain that reaches it, and the check fails.
#
#   perl test/release_path_check.pl SRCDIR PG_INCLUDEDIR_SERVER
#
# TAP output: one "ok"/"not ok" line.
use strict;
use warnings;
use File::Temp qw(tempdir);

my ($src, $pginc) = @ARGV;
die "usage: $0 SRCDIR PG_INCLUDEDIR_SERVER\n" unless $src && $pginc;

# Functions outside lockext the release path may call: memory and string
# primitives that cannot fail or report failure (malloc), the lock
# manager's release, atomics and clocks, non-ERROR reports (errstart is
# the WARNING/LOG entry; ERROR goes through errstart_cold), socket I/O on
# connections already open (poll, hiredis's buffers and formatter, which
# report running out of memory as an error, OpenSSL's record I/O and its
# error strings), closing a wait set (close and pfree), and dynahash
# removal (HASH_REMOVE never allocates).
my %allowed = map { $_ => 1 } qw(
  memcpy memset memcmp memmove strlen strcmp strncmp strlcpy strchr strrchr strstr
  strtoll pg_snprintf pg_sprintf pg_strerror snprintf __errno_location explicit_bzero
  malloc calloc realloc free pfree FreeWaitEventSet redisFormatCommandArgv
  SSL_CTX_free SSL_get_verify_result X509_verify_cert_error_string
  clock_gettime GetCurrentTimestamp
  LockRelease LockHeldByMe SetLatch
  LWLockAcquire LWLockRelease
  errstart errfinish errcode errmsg errmsg_internal errdetail errhint errmsg_plural errdetail_plural
  hash_search hash_seq_init hash_seq_search hash_seq_term hash_get_num_entries
  poll send recv close shutdown getsockopt
  redisBufferWrite redisBufferRead redisGetReplyFromReader redisAppendFormattedCommand
  redisReaderFeed redisFree redisFreeCommand freeReplyObject sdsrange
  SSL_write SSL_read SSL_get_error SSL_has_pending SSL_pending SSL_free SSL_shutdown
  ERR_clear_error ERR_get_error ERR_reason_error_string
  ReleaseExternalFD
  pg_atomic_fetch_add_u64_impl pg_atomic_fetch_sub_u64_impl
);

my $tmp = tempdir(CLEANUP => 1);
opendir(my $dh, $src) or die "cannot read $src: $!";
my @files = sort grep { /\.c$/ } readdir $dh;
closedir $dh;

my (%edges, %global, %static, %indirect_targets);
for my $f (@files)
{
	(my $base = $f) =~ s/\.c$//;
	my $out = `gcc -c -O0 -fcallgraph-info -D_GNU_SOURCE -isystem '$pginc' -I'$src' '$src/$f' -o '$tmp/$base.o' 2>&1`;
	die "gcc failed on $f:\n$out" if $?;
	open my $ci, '<', "$tmp/$base.ci" or die "no call graph for $f: $!";
	while (<$ci>)
	{
		if (/^node: \{ title: "([^"]+)" label: "([^\\"]+)\\n([^"]*)"( shape : ellipse)?/)
		{
			my ($title, $name, $ext) = ($1, $2, $4);
			next if $ext;
			if ($title =~ /:/) { $static{$title} = $name; }
			else { $global{$title} = 1; }
		}
		elsif (/^edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"/)
		{
			push @{ $edges{$1} }, $2;
		}
	}
	close $ci;

	# what indirect calls may reach: the lock backends' release members,
	# the Redis layer's hooks, and pump()'s "enough" predicates
	open my $fh, '<', "$src/$f" or die;
	my $text = do { local $/; <$fh> };
	close $fh;
	while ($text =~ /\.(?:release|release_many|still_held|at_exit)\s*=\s*(\w+)/g)
	{
		$indirect_targets{$1} = $f;
	}
	while ($text =~ /redis_(?:failure|confirm|unsent)_hook\s*=\s*(\w+)\s*;/g)
	{
		$indirect_targets{$1} = $f unless $1 eq 'NULL';
	}
	while ($text =~ /^(\w+)\(const RedisResult \*results[^)]*\)\s*\n\{/mg)
	{
		$indirect_targets{$1} = $f;
	}
}

# the node of a function name as called from file $f: its own static, or a global
sub resolve
{
	my ($f, $name) = @_;
	my $st = "$src/$f:$name";
	return $st if exists $static{$st};
	for my $t (keys %static)
	{
		return $t if $static{$t} eq $name && $t =~ /\Q$f\E:/;
	}
	return $name;
}

my @roots;
if (open my $fh, '<', "$src/release.c")
{
	my $text = do { local $/; <$fh> };
	close $fh;
	while ($text =~ /^(?!static)\w[\w\s\*]*\n(\w+)\(/mg)
	{
		push @roots, $1;
	}
}
push @roots, map { resolve($indirect_targets{$_}, $_) } sort keys %indirect_targets;

my %from;
my @queue = @roots;
$from{$_} = '' for @roots;
while (@queue)
{
	my $n = shift @queue;
	my @next = @{ $edges{$n} // [] };
	push @next, map { resolve($indirect_targets{$_}, $_) } sort keys %indirect_targets
	  if grep { $_ eq '__indirect_call' } @next;
	for my $t (@next)
	{
		next if $t eq '__indirect_call' || exists $from{$t};
		$from{$t} = $n;
		push @queue, $t;
	}
}

my @bad;
for my $t (sort keys %from)
{
	next if $t =~ /:/ || $global{$t} || $allowed{$t};
	my @chain = ($t);
	my $c = $t;
	while ($from{$c} ne '')
	{
		$c = $from{$c};
		unshift @chain, ($static{$c} // $c);
	}
	push @bad, join(' -> ', @chain);
}

if (!@roots || !grep { /release\.c/ || 1 } @roots)
{
	print "not ok 1 - the release path: no entry points found (src/release.c)\n1..1\n";
	exit 1;
}
if (@bad)
{
	print "not ok 1 - the release path calls only what cannot fail (",
	  scalar(@bad), " calls outside the allowlist)\n";
	print "#   $_\n" for @bad;
	print "1..1\n";
	exit 1;
}
printf "ok 1 - the release path calls only what cannot fail (%d functions reached from %d entry points)\n",
  scalar(keys %from), scalar(@roots);
print "1..1\n";
exit 0;
