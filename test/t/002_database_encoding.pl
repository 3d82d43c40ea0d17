# eightms reads text as UTF-8 (SMS bodies in every script, emoji, full-width
# digits in phone numbers), and a database in another encoding cannot store
# an inbound SMS with an emoji: CREATE EXTENSION refuses such a database
# with SQLSTATE 0A000 and says what to do, and leaves nothing behind; a
# UTF8 database with another locale works.
use strict;
use warnings;
use utf8;

use FindBin;
use lib $FindBin::RealBin;
use EightmsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = eightms_node('encoding');
$node->start;
$node->safe_psql('postgres', <<'SQL');
CREATE DATABASE eightms_enc_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE eightms_enc_sql_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE eightms_enc_utf8_c ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
SQL

for my $enc ('latin1', 'sql_ascii')
{
	my $ENC = uc $enc;
	my ($rc, $out, $err) = $node->psql("eightms_enc_$enc",
		"SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  0A000: eightms needs a UTF8 database/, "a $ENC database is refused with SQLSTATE 0A000");
	like($err, qr/HINT:  Create the database with ENCODING 'UTF8'/, 'the refusal says how to make a UTF8 database');
	is($node->safe_psql("eightms_enc_$enc", "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'eightms%'"),
		0, "and leaves no schema behind in the $ENC database");
}

$node->safe_psql('eightms_enc_utf8_c', 'SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE');
my $info = $node->safe_psql('eightms_enc_utf8_c',
	"SELECT encoding || ' ' || segments FROM eightms.sms_info('Привет 👋'); SELECT eightms.e164('＋４４ ２０ ７９４６ ０９５８')");
is($info, "ucs2 1\n+442079460958",
	'a UTF8 database with the C locale works (Cyrillic and emoji in UCS-2, full-width digits read)');

$node->stop;
done_testing();
