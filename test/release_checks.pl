#!/usr/bin/perl
# release_checks.pl - what a release of lockext must get right besides the
# code: META.json against the PGXN meta spec 1.0.0, one version in
# lockext.control, META.json and the SQL scripts, the packages the README
# names, and, given a traced build and a "make dist" archive, that the build
# used nothing but those packages and that the archive is git HEAD.
#
#   perl test/release_checks.pl [--packages "make gcc ..."] [--pg-prefix DIR]
#        [--trace DIR] [--zip FILE --head-files FILE] [SRCDIR]
#
# SRCDIR (default: the tree this script is in) holds META.json,
# lockext.control, Makefile, sql/ and README.md.  --packages: what building
# needs (test/lib.sh's BUILD_PACKAGES).  --trace: a directory of "strace
# -ff -e trace=execve,open,openat" logs of the build; every file the build
# ran or read must belong to one of the --packages, to what they depend on,
# or to an Essential package.  --pg-prefix: where a relocated copy of
# Debian's PostgreSQL lives (its files count as Debian's).  --zip and
# --head-files: the archive "make dist" made and "git ls-tree -r
# --name-only HEAD".  TAP output; exit 0 only when every check passes.
use strict;
use warnings;

use Cwd qw(realpath);
use File::Basename qw(dirname);
use Getopt::Long;
use IO::Uncompress::Unzip qw($UnzipError);
use JSON::PP;
use Test::More;

my ($packages, $pg_prefix, $trace, $zip, $head_files) = ('', '');
GetOptions(
	'packages=s'   => \$packages,
	'pg-prefix=s'  => \$pg_prefix,
	'trace=s'      => \$trace,
	'zip=s'        => \$zip,
	'head-files=s' => \$head_files)
  or die "usage: $0 [--packages LIST] [--pg-prefix DIR] [--trace DIR] [--zip FILE --head-files FILE] [SRCDIR]\n";
my $src = realpath($ARGV[0] // dirname(__FILE__) . '/..');

sub slurp
{
	my ($file) = @_;
	open my $fh, '<', $file or return undef;
	local $/;
	return scalar <$fh>;
}

# "1.1" -> "1.1.0": an extension version as the semantic version PGXN wants
sub semver
{
	my @p = split /\./, shift;
	push @p, 0 while @p < 3;
	return join '.', @p;
}

# numeric comparison of dotted versions
sub vcmp
{
	my @a = split /\./, $_[0];
	my @b = split /\./, $_[1];
	while (@a || @b)
	{
		my $c = (shift(@a) // 0) <=> (shift(@b) // 0);
		return $c if $c;
	}
	return 0;
}

# --- META.json -----------------------------------------------------------
my $meta_text = slurp("$src/META.json");
my $meta = eval { decode_json($meta_text // die "cannot read $src/META.json: $!\n") };
ok(ref $meta eq 'HASH', 'META.json is a JSON object') or diag($@);
$meta = {} unless ref $meta eq 'HASH';

# The spec's required keys (https://pgxn.org/spec/, "Structure").
my @problems;
for my $key (qw(abstract license maintainer meta-spec name provides version))
{
	push @problems, "missing required key \"$key\"" unless defined $meta->{$key};
}
my $semver_re = qr/^\d+\.\d+\.\d+(?:-[0-9A-Za-z-]+)?$/;
push @problems, 'meta-spec.version is not 1.0.0'
  if ref $meta->{'meta-spec'} ne 'HASH' || ($meta->{'meta-spec'}{version} // '') ne '1.0.0';
push @problems, "name \"$meta->{name}\" is not a PGXN name"
  if defined $meta->{name} && $meta->{name} !~ /^[A-Za-z][-A-Za-z0-9_.]+$/;
push @problems, "version \"$meta->{version}\" is not a semantic version"
  if defined $meta->{version} && $meta->{version} !~ $semver_re;
push @problems, 'abstract is empty' if defined $meta->{abstract} && $meta->{abstract} !~ /\S/;
push @problems, 'maintainer is neither a string nor a list of them'
  if defined $meta->{maintainer}
  && !(ref $meta->{maintainer} eq '' || (ref $meta->{maintainer} eq 'ARRAY' && @{ $meta->{maintainer} }));
my %licenses = map { $_ => 1 } qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd
  freebsd gfdl_1_2 gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1
  openssl perl_5 postgresql qpl_1_0 ssleay sun zlib open_source restricted unrestricted unknown);
if (defined(my $l = $meta->{license}))
{
	my @l = ref $l eq 'ARRAY' ? @$l : ref $l eq 'HASH' ? () : ($l);
	push @problems, "license \"$_\" is not one the spec knows" for grep { !$licenses{$_} } @l;
}
if (defined $meta->{provides})
{
	if (ref $meta->{provides} ne 'HASH' || !%{ $meta->{provides} })
	{
		push @problems, 'provides is not an object naming extensions';
	}
	else
	{
		for my $ext (sort keys %{ $meta->{provides} })
		{
			my $p = $meta->{provides}{$ext};
			for my $k (qw(file version))
			{
				push @problems, "provides.$ext has no \"$k\"" unless ref $p eq 'HASH' && defined $p->{$k};
			}
			next unless ref $p eq 'HASH';
			push @problems, "provides.$ext.file $p->{file} is not in the distribution"
			  if defined $p->{file} && !-f "$src/$p->{file}";
			push @problems, "provides.$ext.version \"$p->{version}\" is not a semantic version"
			  if defined $p->{version} && $p->{version} !~ $semver_re;
		}
	}
}
ok(!@problems, 'META.json has what the PGXN meta spec 1.0.0 requires') or diag(join "\n", @problems);

# What the issue asked for besides: prerequisites, resources, tags.
@problems = ();
my $runtime = eval { $meta->{prereqs}{runtime}{requires} } // {};
for my $prereq (qw(PostgreSQL hiredis))
{
	push @problems, "prereqs.runtime.requires has no $prereq" unless defined $runtime->{$prereq};
}
for my $range (values %$runtime)
{
	push @problems, "prerequisite version \"$range\" is not a version range"
	  unless $range =~ /^(?:(?:[<>]=?|==|!=)\s*)?\d+(?:\.\d+)*(?:\s*,\s*(?:[<>]=?|==|!=)\s*\d+(?:\.\d+)*)*$/;
}
push @problems, 'no resources' unless ref $meta->{resources} eq 'HASH' && %{ $meta->{resources} };
push @problems, 'no tags' unless ref $meta->{tags} eq 'ARRAY' && @{ $meta->{tags} };
ok(!@problems, 'META.json has prerequisites (PostgreSQL, hiredis), resources and tags')
  or diag(join "\n", @problems);

# --- one version ---------------------------------------------------------
@problems = ();
my $control = slurp("$src/lockext.control") // '';
my ($version) = $control =~ /^\s*default_version\s*=\s*'([^']+)'/m;
my $dist_version = defined $version ? semver($version) : '';
if (!defined $version)
{
	push @problems, 'lockext.control has no default_version';
}
else
{
	push @problems, "META.json's version " . ($meta->{version} // 'null') . " is not $dist_version (lockext.control's $version)"
	  if ($meta->{version} // '') ne $dist_version;
	my $p = eval { $meta->{provides}{lockext} } // {};
	push @problems, "META.json's provides.lockext.version is not $dist_version"
	  if ($p->{version} // '') ne $dist_version;
	push @problems, "META.json's provides.lockext.file is not sql/lockext--$version.sql"
	  if ($p->{file} // '') ne "sql/lockext--$version.sql";
	push @problems, "sql/lockext--$version.sql is missing" unless -f "$src/sql/lockext--$version.sql";

	# every script is installed, and none is for a version after the default
	my $makefile = slurp("$src/Makefile") // '';
	$makefile =~ s/\\\n/ /g;
	my ($data) = $makefile =~ /^DATA\s*=\s*(.*)$/m;
	my %data = map { $_ => 1 } split ' ', $data // '';
	for my $script (map { s{^\Q$src/\E}{}r } glob("$src/sql/lockext--*.sql"))
	{
		push @problems, "$script is not in the Makefile's DATA" unless $data{$script};
		my @v = $script =~ /--([^-]+?)(?:--([^-]+?))?\.sql$/;
		for my $v (grep { defined } @v)
		{
			push @problems, "$script is for version $v, after lockext.control's $version"
			  if vcmp($v, $version) > 0;
		}
	}
	push @problems, "the Makefile's DATA lacks sql/lockext--$version.sql"
	  unless $data{"sql/lockext--$version.sql"};
}
ok(!@problems, 'lockext.control, META.json and the SQL scripts agree on the version ('
	  . ($version // '?') . ')')
  or diag(join "\n", @problems);

# --- the packages the README names ---------------------------------------
my @build_packages = split ' ', $packages;
SKIP:
{
	skip 'no --packages', 1 unless @build_packages;
	my $readme = slurp("$src/README.md") // '';
	$readme =~ s/\\\n/ /g;
	my @lines = grep { /apt-get install/ } split /\n/, $readme;
	my @missing = @build_packages;
	for my $line (@lines)
	{
		my %named = map { $_ => 1 } split /\s+/, $line;
		my @m = grep { !$named{$_} } @build_packages;
		@missing = @m if @m < @missing;
	}
	ok(@lines && !@missing, "the README's apt-get install names every build package")
	  or diag(@lines ? "missing: @missing" : 'the README has no apt-get install line');
}

# --- the build used only those packages ----------------------------------
SKIP:
{
	skip 'no --trace and --packages', 1 unless defined $trace && @build_packages;

	# who owns which file
	my %owner;
	for my $list (glob '/var/lib/dpkg/info/*.list')
	{
		my ($pkg) = $list =~ m{/([^/:]+)(?::[^/]*)?\.list$};
		open my $fh, '<', $list or next;
		while (my $f = <$fh>)
		{
			chomp $f;
			$owner{$f} .= "$pkg ";
		}
	}

	# what the build packages, the Essential ones, and all they depend on, are
	my @essential = grep { s/\tyes$// } split /\n/,
	  `dpkg-query -W -f '\${Package}\\t\${Essential}\\n'`;
	my %allowed;
	for (split /\n/, `apt-cache depends --recurse --installed --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances @build_packages @essential 2>/dev/null`)
	{
		next if /^\s/;
		s/^<|>$//g;
		s/:.*//;
		$allowed{$_} = 1;
	}

	my (%files, %outside, @unowned);
	for my $log (glob "$trace/*")
	{
		open my $fh, '<', $log or next;
		while (<$fh>)
		{
			$files{$1} = 1 if /^(?:execve|open|openat)\((?:AT_FDCWD, )?"(\/[^"]*)".* = \d+$/;
		}
	}
	for my $path (sort keys %files)
	{
		next unless -f $path;              # directories, removed temporary files
		my $p = $path;
		1 while $p =~ s{/\.(?=/)}{} || $p =~ s{/[^/]+/\.\.(?=/)}{};
		$p =~ s{^\Q$pg_prefix\E(?=/)}{} if $pg_prefix ne '';
		next if index($p, "$src/") == 0;
		next if $p =~ m{^/(?:tmp|proc|sys|dev|usr/local|opt)/};    # no package's
		next if $p =~ m{^/etc/ld\.so\.cache$|/gconv-modules\.cache$};    # generated
		next if $p =~ m{^/usr/(?:lib|share)/locale/};    # the locale of the environment
		my @candidates = ($p);
		my $real = realpath($path);
		$real =~ s{^\Q$pg_prefix\E(?=/)}{} if $pg_prefix ne '';
		push @candidates, $real;
		push @candidates, map { m{^/usr(/(?:s?bin|lib\w*)/.*)} ? $1 : m{^/(?:s?bin|lib\w*)/} ? "/usr$_" : () }
		  @candidates;
		my ($owners) = grep { defined } map { $owner{$_} } @candidates;
		if (!defined $owners)
		{
			push @unowned, $p;
			next;
		}
		my @pkgs = split ' ', $owners;
		$outside{ $pkgs[0] } //= $p unless grep { $allowed{$_} } @pkgs;
	}
	ok(!%outside && !@unowned && %files, 'the build used only files of the build packages')
	  or diag(join "\n",
		(%files ? () : 'no files in the trace'),
		(map { "from $_, not among them: $outside{$_}" } sort keys %outside),
		(map { "from no package: $_" } @unowned[ 0 .. ($#unowned < 19 ? $#unowned : 19) ]));
}

# --- make dist -----------------------------------------------------------
SKIP:
{
	skip 'no --zip and --head-files', 1 unless defined $zip && defined $head_files;
	my $prefix = "lockext-$dist_version/";
	my %want = map { ("$prefix$_" => 1) } grep { length } split /\n/, slurp($head_files) // '';
	my %got;
	my $u = IO::Uncompress::Unzip->new($zip);
	for (my $status = defined $u ? 1 : -1; $status > 0; $status = $u->nextStream)
	{
		my $name = $u->getHeaderInfo->{Name};
		$got{$name} = 1 unless $name =~ m{/$};
	}
	my @extra = grep { !$want{$_} } sort keys %got;
	my @lost = grep { !$got{$_} } sort keys %want;
	ok(defined $u && $zip =~ m{(?:^|/)lockext-\Q$dist_version\E\.zip$} && %want && !@extra && !@lost
		  && $got{"${prefix}META.json"},
		"make dist: lockext-$dist_version.zip holds git HEAD's files under $prefix")
	  or diag(join "\n", (defined $u ? () : "cannot read $zip: $UnzipError"),
		(map { "not in HEAD: $_" } @extra), (map { "not in the archive: $_" } @lost));
}

done_testing();
