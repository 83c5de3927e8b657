/*
 * redis_lua: the Lua scripts of the Redis backend (redis.h), one per
 * call that must be atomic inside Redis.
 *
 * Every script is called with one declared key, the table's index
 * kv:{T}:i, so Redis Cluster sends a call for a table to the shard that
 * holds the table's slot (every key a script touches has the tag {T}).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "redis.h"

/* What every script shares. Numbers are Lua doubles: versions
 * (microseconds) and expiries (ms) stay below 2^53, and go out as
 * strings (an integer reply would truncate nothing, but a string keeps
 * one parser in C). */
#define LUA_PRELUDE \
	"local FLOOR_MS = 60000\n" \
	"local function num(x) return string.format('%.0f', x) end\n" \
	"local function now_us()\n" \
	"  local t = redis.call('TIME')\n" \
	"  return tonumber(t[1]) * 1000000 + tonumber(t[2])\n" \
	"end\n" \
	"local function vkey(T, K) return 'kv:{' .. T .. '}:v:' .. K end\n" \
	"local function fkey(T, K) return 'kv:{' .. T .. '}:f:' .. K end\n" \
	"local function ikey(T) return 'kv:{' .. T .. '}:i' end\n" \
	/* past the live entry's version, or past the floor a delete or \
	 * an expiry (whose event carries floor + 1) left */ \
	"local function next_version(T, K, cur, now)\n" \
	"  local old = tonumber(cur)\n" \
	"  if not old then\n" \
	"    local f = tonumber(redis.call('GET', fkey(T, K)))\n" \
	"    old = f and f + 1 or 0\n" \
	"  end\n" \
	"  return math.max(now, old + 1)\n" \
	"end\n" \
	/* "TYPE VER EXP TLEN KLEN\n" T K VALUE, for every kv-srv's \
	 * watchers */ \
	"local function publish(kind, T, K, ver, exp, v)\n" \
	"  redis.call('PUBLISH', '" KV_CHANNEL "', kind .. ' ' .. num(ver) .. " \
	"' ' .. num(exp) .. ' ' .. #T .. ' ' .. #K .. '\\n' .. T .. K .. v)\n" \
	"end\n" \
	"local function write(T, K, value, ttl, cur, now)\n" \
	"  local ver = next_version(T, K, cur, now)\n" \
	"  local exp = 0\n" \
	"  if ttl > 0 then exp = math.floor(now / 1000) + ttl end\n" \
	"  redis.call('HSET', vkey(T, K), 'v', value, 'ver', num(ver), " \
	"'exp', num(exp))\n" \
	"  if ttl > 0 then\n" \
	"    redis.call('PEXPIREAT', vkey(T, K), num(exp))\n" \
	"    redis.call('SET', fkey(T, K), num(ver), 'PX', " \
	"num(ttl + FLOOR_MS))\n" \
	"  else\n" \
	"    redis.call('PERSIST', vkey(T, K))\n" \
	"    redis.call('DEL', fkey(T, K))\n" \
	"  end\n" \
	"  redis.call('ZADD', ikey(T), 0, K)\n" \
	"  publish(1, T, K, ver, exp, value)\n" \
	"  return ver, exp\n" \
	"end\n"

/* ARGV: T K value ttl_ms expected_version if_absent(0/1) */
static const char put_lua[] = LUA_PRELUDE
	"local T, K = ARGV[1], ARGV[2]\n"
	"local cur = redis.call('HGET', vkey(T, K), 'ver')\n"
	"if ARGV[6] == '1' and cur then return {'EXISTS', cur} end\n"
	"if ARGV[5] ~= '0' then\n"
	"  if not cur then return {'ABSENT'} end\n"
	"  if cur ~= ARGV[5] then return {'MISMATCH', cur} end\n"
	"end\n"
	"local ver, exp = write(T, K, ARGV[3], tonumber(ARGV[4]), cur, "
	"now_us())\n"
	"return {'OK', num(ver), num(exp)}\n";

/* ARGV: T K expected_version */
static const char delete_lua[] = LUA_PRELUDE
	"local T, K = ARGV[1], ARGV[2]\n"
	"local cur = redis.call('HGET', vkey(T, K), 'ver')\n"
	"if ARGV[3] ~= '0' then\n"
	"  if not cur then return {'ABSENT'} end\n"
	"  if cur ~= ARGV[3] then return {'MISMATCH', cur} end\n"
	"end\n"
	"if not cur then return {'NONE'} end\n"
	"local ver = next_version(T, K, cur, now_us())\n"
	"redis.call('DEL', vkey(T, K))\n"
	"redis.call('SET', fkey(T, K), num(ver), 'PX', FLOOR_MS)\n"
	"redis.call('ZREM', ikey(T), K)\n"
	"publish(2, T, K, ver, 0, '')\n"
	"return {'OK', num(ver)}\n";

/* ARGV: T K delta ttl_ms. HINCRBY does the 64-bit arithmetic (a Lua
 * number would round past 2^53) and refuses a value that is not an
 * integer or a sum that overflows; an existing counter keeps its
 * expiry, as INCRBY does. */
static const char increment_lua[] = LUA_PRELUDE
	"local T, K = ARGV[1], ARGV[2]\n"
	"local cur = redis.call('HMGET', vkey(T, K), 'ver', 'exp')\n"
	"local now = now_us()\n"
	"if not cur[1] then\n"
	"  local ver, exp = write(T, K, ARGV[3], tonumber(ARGV[4]), nil, "
	"now)\n"
	"  return {'OK', ARGV[3], num(ver), num(exp)}\n"
	"end\n"
	"local r = redis.pcall('HINCRBY', vkey(T, K), 'v', ARGV[3])\n"
	"if type(r) == 'table' and r.err then return {'REFUSED', r.err} end\n"
	"local v = redis.call('HGET', vkey(T, K), 'v')\n"
	"local ver = next_version(T, K, cur[1], now)\n"
	"local exp = tonumber(cur[2]) or 0\n"
	"redis.call('HSET', vkey(T, K), 'ver', num(ver))\n"
	"if exp > 0 then\n"
	"  redis.call('SET', fkey(T, K), num(ver), 'PXAT', "
	"num(exp + FLOOR_MS))\n"
	"end\n"
	"publish(1, T, K, ver, exp, v)\n"
	"return {'OK', v, num(ver), num(exp)}\n";

/* ARGV: T K1 K2 ...; per key: value, version, expiry (nil: missing). */
static const char get_many_lua[] = LUA_PRELUDE
	"local out = {}\n"
	"for i = 2, #ARGV do\n"
	"  local e = redis.call('HMGET', vkey(ARGV[1], ARGV[i]), 'v', 'ver', "
	"'exp')\n"
	"  out[#out + 1] = e[1]\n"
	"  out[#out + 1] = e[2]\n"
	"  out[#out + 1] = e[3]\n"
	"end\n"
	"return out\n";

/* ARGV: T, then K value ttl_ms per item; per item: version, expiry. */
static const char put_many_lua[] = LUA_PRELUDE
	"local T, now, out = ARGV[1], now_us(), {}\n"
	"for i = 2, #ARGV, 3 do\n"
	"  local cur = redis.call('HGET', vkey(T, ARGV[i]), 'ver')\n"
	"  local ver, exp = write(T, ARGV[i], ARGV[i + 1], "
	"tonumber(ARGV[i + 2]), cur, now)\n"
	"  out[#out + 1] = num(ver)\n"
	"  out[#out + 1] = num(exp)\n"
	"end\n"
	"return out\n";

/* ARGV: T lo hi limit keys_only(0/1), lo and hi as ZRANGEBYLEX takes
 * them; up to limit + 1 live entries in key order as key, value,
 * version, expiry. Index members whose entry expired or was evicted are
 * dropped on the way. */
static const char list_lua[] = LUA_PRELUDE
	"local T, lo, hi = ARGV[1], ARGV[2], ARGV[3]\n"
	"local limit, keys_only = tonumber(ARGV[4]), ARGV[5] == '1'\n"
	"local out, n = {}, 0\n"
	"while n <= limit do\n"
	"  local keys = redis.call('ZRANGEBYLEX', ikey(T), lo, hi, 'LIMIT', "
	"0, limit + 1 - n)\n"
	"  if #keys == 0 then break end\n"
	"  for _, k in ipairs(keys) do\n"
	"    local e = redis.call('HMGET', vkey(T, k), 'v', 'ver', 'exp')\n"
	"    if e[2] then\n"
	"      n = n + 1\n"
	"      out[#out + 1] = k\n"
	"      out[#out + 1] = keys_only and '' or e[1]\n"
	"      out[#out + 1] = e[2]\n"
	"      out[#out + 1] = e[3]\n"
	"    else\n"
	"      redis.call('ZREM', ikey(T), k)\n"
	"    end\n"
	"    lo = '(' .. k\n"
	"  end\n"
	"end\n"
	"return out\n";

/* ARGV: T K, after Redis expired or evicted kv:{T}:v:K: drops it from
 * the index and gives the version of its EXPIRED or EVICTED event (the
 * floor + 1, or now for an entry that had none); nil when the key is
 * back. */
static const char reap_lua[] = LUA_PRELUDE
	"local T, K = ARGV[1], ARGV[2]\n"
	"if redis.call('EXISTS', vkey(T, K)) == 1 then return false end\n"
	"redis.call('ZREM', ikey(T), K)\n"
	"local f = tonumber(redis.call('GET', fkey(T, K)))\n"
	"if f then return num(f + 1) end\n"
	"return num(now_us())\n";

const char *const redis_script_text[S_COUNT] = {
	put_lua, delete_lua, increment_lua, get_many_lua, put_many_lua,
	list_lua, reap_lua,
};

char redis_script_sha[S_COUNT][REDIS_SHA_LEN];

void
redis_scripts_init(void)
{
	for (int i = 0; i < S_COUNT; i++) {
		unsigned char d[SHA_DIGEST_LENGTH];

		SHA1((const unsigned char *)redis_script_text[i],
		    strlen(redis_script_text[i]), d);
		for (int j = 0; j < SHA_DIGEST_LENGTH; j++)
			snprintf(redis_script_sha[i] + 2 * j, 3, "%02x", d[j]);
	}
}
