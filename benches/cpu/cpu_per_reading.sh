#!/bin/bash
# CPU of the daemon per reading, end to end (BENCHMARKS.md, "CPU per
# reading"): Mosquitto on its own port, the daemon (20 mines x 32 points,
# archive on or off) and the peer benchmark's publisher
# (benches/peers/publisher.rs) in their own processes;
# CPU-seconds per thread from /proc/PID/task/*/stat, from the first publish
# until every reading is accepted (and, archive on, written to Parquet).
#
# usage (from the repository root):
#   benches/cpu/cpu_per_reading.sh BIN on|off MESSAGES LABEL
#   BIN: a release minewatch; the publisher is built as an example.
#   Results and logs go to ${OUT:-/tmp/minewatch-cpu}/LABEL.
set -u
BIN=$1; ARCH=$2; N=$3; LABEL=$4
cargo build --release --example peer_publisher -q || exit 1
PUBLISHER=${CARGO_TARGET_DIR:-target}/release/examples/peer_publisher
D=${OUT:-/tmp/minewatch-cpu}/$LABEL; rm -rf $D; mkdir -p $D/data
PORT=${PORT:-18831}; HTTP=${HTTP:-18081}
cat > $D/mosq.conf <<EOC
listener $PORT 127.0.0.1
allow_anonymous true
max_queued_messages 0
persistence false
EOC
mosquitto -c $D/mosq.conf > $D/mosq.log 2>&1 & MOSQ=$!
sleep 0.5
$BIN simulate --mines 20 --points 32 --broker mqtt://127.0.0.1:$PORT --write-config $D/config.toml > /dev/null
python3 - $D/config.toml $ARCH $HTTP $D <<'EOP'
import sys,re
p,arch,http,d=sys.argv[1:]
s=open(p).read()
s=re.sub(r'(\[mqtt\]\n)', r'\1client_id = "cpu-daemon"\n', s, count=1)
s += f'\n[http]\nlisten = "127.0.0.1:{http}"\nmetrics_public = true\n[daemon]\ndata_dir = "{d}/data"\n[archive]\nenabled = {"true" if arch=="on" else "false"}\nflush_secs = 5\n'
open(p,'w').write(s)
EOP
RUST_LOG=warn $BIN run --config $D/config.toml > $D/daemon.log 2>&1 & PID=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:$HTTP/readyz >/dev/null && break; sleep 0.2; done
acc() { curl -s http://127.0.0.1:$HTTP/metrics | awk '/^minewatch_readings_accepted_total\{source="mqtt"\}/{print $2}'; }
snap() { for t in /proc/$PID/task/*; do echo "$(cat $t/comm)|$(cut -d')' -f2 $t/stat | awk '{print $12+$13}')"; done; }
sleep 1
snap > $D/cpu0; T0=$(date +%s.%N); L0=$(cat /proc/loadavg)
if [ -n "${PERF:-}" ]; then perf record -e cpu-clock -F 1999 -p $PID -o $D/perf.data > $D/perf.log 2>&1 & PERFPID=$!; fi
$PUBLISHER send --port $PORT --mines 20 --points 32 --messages $N --cross-every ${INJECT:-199} > $D/pub.log 2>&1 & PUB=$!
WANT=$((N*500))
while :; do a=$(acc); [ -n "$a" ] && [ "${a%.*}" -ge $WANT ] && break; sleep 0.1; done
TA=$(date +%s.%N)
arows() { curl -s http://127.0.0.1:$HTTP/metrics | awk '/^minewatch_archive_rows_written_total\{stream="readings"\}/{print $2}'; }
if [ $ARCH = on ]; then for i in $(seq 300); do a=$(arows); [ -n "$a" ] && [ "${a%.*}" -ge $WANT ] && break; sleep 0.1; done; echo "archive rows written: $(arows)"; fi
T1=$(date +%s.%N); snap > $D/cpu1; L1=$(cat /proc/loadavg)
if [ -n "${PERF:-}" ]; then kill -INT $PERFPID; wait $PERFPID; fi
wait $PUB
RSS=$(awk '/VmHWM/{print $2}' /proc/$PID/status)
S0=$(date +%s.%N); kill -TERM $PID; wait $PID; S1=$(date +%s.%N)
kill $MOSQ; wait $MOSQ 2>/dev/null
python3 - $D $WANT $T0 $TA "$L0" "$L1" $RSS $S0 $S1 $T1 <<'EOP'
import sys,collections,re
d,want,t0,t1,l0,l1,rss,s0,s1,tend=sys.argv[1:]
want=int(want); wall=float(t1)-float(t0); cwall=float(tend)-float(t0)
def load(f):
    c=collections.Counter()
    for line in open(f):
        n,v=line.rstrip('\n').rsplit('|',1)
        n=re.sub(r'-\d+$','-N',n)
        c[n]+=int(v)
    return c
a,b=load(d+'/cpu0'),load(d+'/cpu1')
rows=sorted(((k,(b[k]-a.get(k,0))/100) for k in b),key=lambda x:-x[1])
tot=sum(v for _,v in rows)
print(f"{d}: {want} readings accepted in {wall:.2}s = {want/wall:,.0f}/s; daemon CPU {tot:.2}s over {cwall:.1f}s (to archive written); {tot/want*1e6:.3f} us CPU/reading; peak RSS {int(rss)/1024:.0f} MB; SIGTERM took {float(s1)-float(s0):.1f}s; load {l0.split()[0]} -> {l1.split()[0]}")
for k,v in rows:
    if v>0: print(f"   {k:<22}{v:7.2f}s {v/want*1e6:.3f} us/reading")
EOP
cat $D/pub.log
