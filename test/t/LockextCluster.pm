# LockextCluster: what lockext's Redis TAP tests do with clusters — start
# one that shares Redis nodes, probe a key from it, reach another
# cluster's tables through postgres_fdw (to share data between clusters),
# run pgbench on several clusters at once, and put Debian's pgbouncer in
# front of one.
package LockextCluster;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use File::Path qw(make_path);
use IO::Socket::INET;
use IPC::Run;
use Time::HiRes qw(usleep);

our @EXPORT = qw(start_lockext_cluster free_on link_tables pgbench_on start_pgbouncer);

my @bouncers;

# A started cluster with lockext preloaded and using $nodes (URL list);
# %init goes to init() (allows_streaming => 1, ...).
sub start_lockext_cluster
{
	my ($name, $nodes, $timeout, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	$node->append_conf('postgresql.conf', qq{
cluster_name = '$name'
shared_preload_libraries = 'lockext'
lockext.redis_nodes = '$nodes'
lockext.command_timeout = '$timeout'
lockext.connect_timeout = '$timeout'
max_connections = 40
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION lockext');
	return $node;
}

# Can a new session of $node take $key right now (without waiting)?
sub free_on
{
	my ($node, $key) = @_;
	return $node->safe_psql('postgres', "BEGIN; SELECT dlock_try_acquire('$key'); COMMIT") eq 't';
}

# Make $owner's tables (name => column list) foreign tables in $user.
sub link_tables
{
	my ($user, $owner, %tables) = @_;
	my $server = $owner->name;
	$user->safe_psql('postgres', join("\n",
		'CREATE EXTENSION IF NOT EXISTS postgres_fdw;',
		"CREATE SERVER $server FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '"
		  . $owner->host . "', port '" . $owner->port . "', dbname 'postgres');",
		"CREATE USER MAPPING FOR CURRENT_USER SERVER $server;",
		map { "CREATE FOREIGN TABLE $_ ($tables{$_}) SERVER $server;" } sort keys %tables));
}

# Run pgbench with script (text) on every node at once; returns a
# [stdout, stderr] pair per node once all are done.
sub pgbench_on
{
	my ($nodes, $script, @args) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	open my $fh, '>', "$dir/script.sql" or die "cannot write $dir/script.sql: $!";
	print $fh $script;
	close $fh;
	my @runs;
	for my $node (@$nodes)
	{
		my ($o, $e) = ('', '');
		local %ENV = %ENV;
		$ENV{PGHOST} = $node->host;
		$ENV{PGPORT} = $node->port;
		push @runs, [ IPC::Run::start([ 'pgbench', '-n', @args, '-f', "$dir/script.sql", 'postgres' ],
			'>', \$o, '2>', \$e), \$o, \$e ];
	}
	$_->[0]->finish for @runs;
	return map { [ ${ $_->[1] }, ${ $_->[2] } ] } @runs;
}

# Start pgbouncer in front of $node for the databases @$dbs, with the
# pool mode and further [pgbouncer] lines given; dies unless it listens.
# Returns the node as the pooler's clients see it (its host and port).
# Stopped at the end of the test script.
sub start_pgbouncer
{
	my ($node, $pool_mode, $dbs, @extra) = @_;
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/pgbouncer_" . $node->name;
	make_path($dir);
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $user = $node->safe_psql('postgres', 'SELECT current_user');
	open my $fh, '>', "$dir/userlist.txt" or die "cannot write $dir/userlist.txt: $!";
	print $fh qq{"$user" ""\n};
	close $fh;
	open $fh, '>', "$dir/pgbouncer.ini" or die "cannot write $dir/pgbouncer.ini: $!";
	print $fh "[databases]\n";
	print $fh "$_ = host=" . $node->host . ' port=' . $node->port . " dbname=$_\n" for @$dbs;
	print $fh join("\n", '[pgbouncer]', 'listen_addr = 127.0.0.1', "listen_port = $port",
		'unix_socket_dir =', 'auth_type = trust', "auth_file = $dir/userlist.txt",
		"pool_mode = $pool_mode", 'max_client_conn = 20', "logfile = $dir/pgbouncer.log",
		"pidfile = $dir/pgbouncer.pid", @extra), "\n";
	close $fh;
	push @bouncers, IPC::Run::start([ 'pgbouncer', "$dir/pgbouncer.ini" ],
		'>', "$dir/stdout.log", '2>', "$dir/stderr.log");
	for (1 .. 200)
	{
		return bless { %$node, _host => '127.0.0.1', _port => $port }, ref $node
		  if IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port);
		usleep(25_000);
	}
	die "pgbouncer did not start (see $dir)";
}

END
{
	local $?;
	for my $b (@bouncers)
	{
		$b->signal('TERM');
		eval { $b->finish; };
	}
}

1;
