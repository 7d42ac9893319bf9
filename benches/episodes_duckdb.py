"""Over-limit episodes computed by DuckDB from the same Parquet files that
`cargo bench --bench archive` replays, timed, and checked against the
episodes minewatch's replay found (episodes-minewatch.csv in the same folder).

An episode is a gaps-and-islands run of readings with value >= 1.0 (alarm and
restore line of every point of the bench archive) per point in event time: it
starts at its first reading, its peak is its highest value, and it resolves at
the first reading of the next run (the first reading below 1.0), or never.

Usage: .venv/bin/python benches/episodes_duckdb.py ARCHIVE_DIR [RUNS]
"""

import csv
import datetime
import statistics
import sys
import time

import duckdb

QUERY = """
with r as (
  select point, ts, value,
         value >= 1.0 as over,
         coalesce(lag(value >= 1.0) over (partition by point order by ts), false) as prev_over
  from read_parquet('{files}')
),
numbered as (
  select point, ts, value, over,
         sum(case when over <> prev_over then 1 else 0 end)
           over (partition by point order by ts rows unbounded preceding) as island
  from r
),
islands as (
  select point, island, bool_and(over) as over, min(ts) as started, max(value) as peak
  from numbered group by point, island
),
edges as (
  select point, over, started, peak,
         lead(started) over (partition by point order by island) as resolved
  from islands
)
select point, epoch_ms(started), epoch_ms(resolved), peak from edges where over order by point, started
"""

# The same episodes without their peaks: only the edges (a cheaper plan).
EDGES_ONLY = """
with r as (
  select point, ts, value >= 1.0 as over,
         coalesce(lag(value >= 1.0) over (partition by point order by ts), false) as prev_over
  from read_parquet('{files}')
),
edges as (select point, ts, over from r where over <> prev_over),
pairs as (
  select point, ts as started, lead(ts) over (partition by point order by ts) as resolved, over
  from edges
)
select count(*) from pairs where over
"""


def timed(con, query, runs):
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = con.execute(query).fetchall()
        times.append(time.perf_counter() - start)
    return result, times


def iso(ms):
    if ms is None:
        return ""
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def main():
    folder = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    con = duckdb.connect()
    query = QUERY.format(files=f"{folder}/readings/**/*.parquet")
    rows, times = timed(con, query, runs)
    edges, edge_times = timed(con, EDGES_ONLY.format(files=f"{folder}/readings/**/*.parquet"), runs)
    readings = con.execute(
        f"select count(*) from read_parquet('{folder}/readings/**/*.parquet')"
    ).fetchone()[0]
    threads = con.execute("select current_setting('threads')").fetchone()[0]
    with open(f"{folder}/episodes-minewatch.csv", newline="") as f:
        ours = [
            (r["point"], r["started_at"], r["resolved_at"], float(r["peak"]))
            for r in csv.DictReader(f)
        ]
    theirs = [(p, iso(s), iso(e), float(v)) for p, s, e, v in rows]
    agree = ours == theirs
    print(
        f"duckdb {duckdb.__version__} ({threads} threads): {len(theirs)} episodes over {readings} readings; "
        f"best {min(times):.3f} s, median {statistics.median(times):.3f} s over {runs} runs "
        f"({readings / min(times) / 1e6:.1f} M readings/s at best)"
    )
    print(
        f"duckdb, edges only (no peaks): {edges[0][0]} episodes; best {min(edge_times):.3f} s, "
        f"median {statistics.median(edge_times):.3f} s"
    )
    print(f"minewatch: {len(ours)} episodes; identical to DuckDB's: {agree}")
    if not agree:
        for a, b in zip(ours, theirs):
            if a != b:
                print("first difference: minewatch", a, "duckdb", b)
                break
        sys.exit(1)


if __name__ == "__main__":
    main()
