"""CPU per login, per service and per identity thread: the before-and-after figure of
docs/performance.md ("The same logins, before and after").

    .venv/bin/python benchmarks/login_cpu.py [--rounds 4] [--logins 400]

Starts the whole system (Apache Kafka, PostgreSQL, the four services), makes 5 confirmed
accounts, logs in ``--logins`` times with 4 clients, and prints each service's process CPU per
login with its idle CPU over as long subtracted, and how identity's threads shared it (the
bcrypt workers apart from the event loop's). At ``--rounds 4`` the hash is about 1 ms, so what
it prints is the work around the hash. Run it on an idle machine; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import ADMIN, SERVICES, Bench, Profiler, closed_loop, cpu_seconds, local_system, service_cpu

from portal_auth.system import System
from shared.secrets import new_mail_token_key


def machine_cpu() -> float:
    """CPU seconds the whole machine spent working (user, nice, system, irq, softirq), all cores."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6)) / os.sysconf("SC_CLK_TCK")


def cpu_by_command() -> dict[str, float]:
    """CPU seconds of every process on the machine, summed by command name (java, postgres, ...)."""
    found: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            name, seconds = Path(f"/proc/{pid}/comm").read_text().strip(), cpu_seconds(int(pid))
        except OSError:
            continue  # ended meanwhile
        found[name] = found.get(name, 0.0) + seconds
    return found


def beyond_idle(before: dict[str, float], after: dict[str, float], idle: dict[str, float],
                idle_after: dict[str, float], name: str) -> float:
    """``name``'s CPU seconds over the logins, less what it took over as long idle right after."""
    return after.get(name, 0.0) - before.get(name, 0.0) - (idle_after.get(name, 0.0) - idle.get(name, 0.0))


def thread_cpu(pid: int) -> dict[tuple[str, str], float]:
    """CPU seconds of each thread of ``pid``, by (thread id, name)."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            continue  # ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        found[(tid, name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


async def measure(system: System, key: str, logins: int, profile: Path | None) -> None:
    bench = Bench(system, key)
    profiler = Profiler(system, profile)
    try:
        await bench.new_org()
        emails = await bench.accounts(5)
        await closed_loop(bench, emails, 4, 2.0)  # warm-up: connections, caches
        await asyncio.sleep(2.0)
        identity = system.processes["identity"].process.pid
        profiler.start(20.0)
        threads, before, started = thread_cpu(identity), service_cpu(system), time.perf_counter()
        machine, commands = machine_cpu(), cpu_by_command()
        done = await closed_loop(bench, emails, 4, 3600.0, logins=logins)
        await asyncio.sleep(1.5)  # the consumers finish the last events
        after, elapsed, threads_after = service_cpu(system), time.perf_counter() - started, thread_cpu(identity)
        idle, machine_after, commands_after = service_cpu(system), machine_cpu(), cpu_by_command()
        await asyncio.sleep(elapsed)
        idle_after, machine_idle, commands_idle = service_cpu(system), machine_cpu(), cpu_by_command()
        print(f"{done} logins in {elapsed:.1f} s, BCRYPT_ROUNDS={os.environ['BCRYPT_ROUNDS']}")
        work = {name: beyond_idle(before, after, idle, idle_after, name) for name in SERVICES}
        for name in SERVICES:
            print(f"  {name}: {work[name] / done * 1000:.2f} ms per login beyond its idle CPU")
        services = sum(work.values())
        machine_work = (machine_after - machine) - (machine_idle - machine_after)
        print(f"  the whole machine: {machine_work / done * 1000:.2f} ms per login beyond its idle CPU, "
              f"{(machine_work - services) / done * 1000:.2f} ms of it outside the services (Kafka, PostgreSQL, "
              "this client, the kernel)")
        for name in ("java", "postgres"):
            beyond = beyond_idle(commands, commands_after, commands_after, commands_idle, name)
            print(f"    of it {name}: {beyond / done * 1000:.2f} ms per login beyond its idle CPU")
        print("  identity's threads:")
        for thread in sorted(threads_after, key=lambda t: threads.get(t, 0.0) - threads_after[t]):
            print(f"    {thread[1]} {thread[0]}: {(threads_after[thread] - threads.get(thread, 0.0)) / done * 1000:.2f} ms per login")
        for line in profiler.report():
            print(line)
    finally:
        await bench.client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="BCRYPT_ROUNDS of the services (4: the hash is about 1 ms)")
    parser.add_argument("--logins", type=int, default=400)
    parser.add_argument("--profile", type=Path, help="run py-spy on each service over the first 20 s of logins")
    args = parser.parse_args()
    key = new_mail_token_key()
    os.environ["BCRYPT_ROUNDS"] = str(args.rounds)
    env = {"ADMIN_TOKEN": ADMIN, "MAIL_TOKEN_KEY": key, "BCRYPT_ROUNDS": str(args.rounds), "TRUSTED_PROXIES": "127.0.0.1",
           "MAIL_FROM": "portal@example.test"}
    with tempfile.TemporaryDirectory(prefix="login-cpu-") as tmp, local_system(Path(tmp), env=env) as system:
        asyncio.run(measure(system, key, args.logins, args.profile))


if __name__ == "__main__":
    main()
