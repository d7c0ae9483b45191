"""Posts a batch the way a competent Python developer would: asyncio + aiohttp.

    python3 asyncio_poster.py DIR CONCURRENCY [group|each]

Reads DIR/jobs.jsonl and DIR/accounts.toml (the orchestrator's formats),
POSTs every job to its account's /api/v1/statuses with one keep-alive
connection pool, the job id as Idempotency-Key, and makes each outcome
durable in DIR/outcomes.sqlite (WAL, synchronous=FULL: what the
orchestrator's store does) before its worker takes the next job. With
`group` (the default) outcomes are committed in groups, as the
orchestrator's are: a writer commits everything queued in one transaction,
off the event loop, so a commit's fsync is paid once per group; with `each`
every outcome is committed alone, on the event loop, as the simplest script
does. Exits 1 if any post failed, 3 without aiohttp.
"""

import asyncio
import json
import sqlite3
import sys
import time
import tomllib
from pathlib import Path

try:
    import aiohttp
except ImportError:
    print("aiohttp is not installed (pip install aiohttp)", file=sys.stderr)
    sys.exit(3)


def open_db(path):
    # Opened on the main thread, used by the writer's thread (one at a time).
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS outcomes ("
        " job_id TEXT PRIMARY KEY, status INTEGER, posted_id TEXT, ended REAL)"
    )
    db.commit()
    return db


async def post_all(jobs, accounts, concurrency, db, grouped):
    failures = []
    queue = iter(jobs)
    outcomes = asyncio.Queue()

    def commit(rows):
        db.executemany("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?)", rows)
        db.commit()

    async def writer():
        while True:
            group = [await outcomes.get()]
            while not outcomes.empty():
                group.append(outcomes.get_nowait())
            await asyncio.to_thread(commit, [row for row, _ in group])
            for _, done in group:
                done.set_result(None)

    async def worker(session):
        loop = asyncio.get_running_loop()
        for job in queue:  # one shared iterator: each job taken once
            account = accounts[job["account"]]
            url = account["base_url"].rstrip("/") + "/api/v1/statuses"
            headers = {
                "Authorization": f"Bearer {account['token']}",
                "Idempotency-Key": job["id"],
            }
            status, posted = None, None
            try:
                async with session.post(url, json=job["payload"], headers=headers) as resp:
                    status = resp.status
                    body = await resp.json(content_type=None)
                    if 200 <= status < 300:
                        posted = str(body["id"])
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError) as e:
                failures.append(f"{job['id']}: {e!r}")
            if posted is None and status is not None:
                failures.append(f"{job['id']}: HTTP {status}")
            row = (job["id"], status, posted, time.time())
            if not grouped:
                commit([row])
                continue
            durable = loop.create_future()
            outcomes.put_nowait((row, durable))
            await durable

    # The writer's connection is used from its thread only.
    writing = asyncio.create_task(writer())
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    writing.cancel()
    return failures


def main():
    folder, concurrency = Path(sys.argv[1]), int(sys.argv[2])
    grouped = (sys.argv[3] if len(sys.argv) > 3 else "group") == "group"
    with open(folder / "accounts.toml", "rb") as f:
        accounts = tomllib.load(f)["accounts"]
    with open(folder / "jobs.jsonl") as f:
        jobs = [json.loads(line) for line in f if line.strip()]
    db = open_db(folder / "outcomes.sqlite")
    failures = asyncio.run(post_all(jobs, accounts, concurrency, db, grouped))
    (done,) = db.execute("SELECT count(*) FROM outcomes WHERE posted_id IS NOT NULL").fetchone()
    db.close()
    for failure in failures[:10]:
        print(failure, file=sys.stderr)
    if failures or done != len(jobs):
        print(f"{len(failures)} of {len(jobs)} posts failed", file=sys.stderr)
        sys.exit(1)
    print(f"posted {done} jobs")


if __name__ == "__main__":
    main()
