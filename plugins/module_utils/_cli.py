# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""``lifeboat``: the host command the systemd timers run. The same library as the modules, no Ansible.

    lifeboat backup [--job NAME]... [--config FILE] [--pings FILE [--ping-start] [--ping-success]]
    lifeboat verify [--job NAME] [--select newest|all|unverified] [--level LEVEL]
    lifeboat prune  [--job NAME] [--dry-run]
    lifeboat copy   [--job NAME]
    lifeboat fetch  --job NAME [--archive FILE] [--directory DIR]
    lifeboat status [--job NAME] [--metrics-file FILE]
    lifeboat check  [--config FILE]
    lifeboat restart-stopped [--job NAME] [--config FILE]
    lifeboat notify --config NOTIFY.json UNIT
    lifeboat ingress-check CLOUDFLARED_CONFIG [--url URL]...
    lifeboat healthcheck --config PROBES.json [--state FILE] [--nagios] | --check-config FILE
    lifeboat proxy-renew --config RENEW.json [--force]

``status`` (and ``healthcheck --nagios``) exits 0, 1, 2 or 3 (OK, WARNING, CRITICAL, UNKNOWN) as monitoring
plugins do; the others exit 0 on success, 1 on failure and 2 on a usage error (``healthcheck``: a bad probes
file). ``backup`` of several jobs runs every one of them, whatever fails, and ends with one line per failed job.
On a terminal a progress line shows how a dump advances; under systemd (``JOURNAL_STREAM`` set) lines carry syslog
priorities for the journal instead.
``restart-stopped`` starts the containers a killed backup run left stopped (the services' ``ExecStopPost=``); it
needs no config file (the notes are in ``_stopped_notes.notes_dir()``), and ``backup`` and ``verify`` do it first.
``--pings FILE`` (backup, verify, copy, prune) pings the monitoring targets of a 0600 JSON file (``_pings``): a
failed command pings ``fail`` with the tail of its output; ``--ping-start`` pings ``start`` first and
``--ping-success`` pings ``success`` after a good run (the first and the last command of a job's unit). A ping that
cannot be delivered is one warning line and changes nothing else.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time
import traceback
import typing as t

from . import (
    _catalog,
    _config,
    _healthcheck,
    _ingress,
    _manifest,
    _notify,
    _offsite,
    _pings,
    _prometheus,
    _proxy_renew,
    _retention,
    _signing,
    _status,
    _verify,
)
from ._common import LifeboatError, one_line, redact, register_secret
from ._stopped_notes import notes_dir, restart_before_run, restart_left_stopped
from ._termination import stop_cleanly_on_termination, stop_requested

DEFAULT_CONFIG = "/etc/lifeboat/lifeboat.yml"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
NAGIOS_UNKNOWN = 3


class Output:
    """Plain lines for people and the journal; a progress line only on a terminal."""

    PRIORITY: t.ClassVar[dict[str, int]] = {"error": 3, "warning": 4, "info": 6}

    def __init__(self, stream: t.TextIO = sys.stderr) -> None:
        self.stream = stream
        self.journal = bool(os.environ.get("JOURNAL_STREAM"))
        self.terminal = stream.isatty() and not self.journal
        self._progress_shown = False
        self._lock = threading.Lock()
        self.tail: collections.deque[str] = collections.deque(maxlen=40)  # what a fail ping carries

    def line(self, text: str, level: str = "info") -> None:
        with self._lock:
            self._clear_progress()
            prefix = f"<{self.PRIORITY[level]}>" if self.journal else ("" if level == "info" else f"{level}: ")
            self.stream.write(f"{prefix}{redact(text)}\n")
            self.tail.append(("" if level == "info" else f"{level}: ") + redact(text))
            self.stream.flush()

    def progress(self, text: str) -> None:
        if not self.terminal:
            return
        with self._lock:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self._progress_shown = True

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.stream.write("\r\033[K")
            self._progress_shown = False


class DumpProgress:
    """Watches the hidden partial file of a running dump and shows how far it got."""

    def __init__(self, output: Output, job: str, destination: str) -> None:
        self.output, self.job, self.destination = output, job, destination
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> DumpProgress:
        if self.output.terminal:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.output.progress("")

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                names = [n for n in os.listdir(self.destination) if _catalog.PARTIAL_NAME.match(n)
                         and n.startswith(f".{self.job}-") and n.endswith(f".partial-{os.getpid()}")]
                written = sum(os.path.getsize(os.path.join(self.destination, n)) for n in names)
            except OSError:
                continue
            elapsed = time.monotonic() - self._started
            self.output.progress(f"{self.job}: {_catalog.human_size(written)} written in {elapsed:.0f} s "
                                 f"({_catalog.human_size(written / max(elapsed, 0.1))}/s)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help=f"the YAML file describing the jobs (default {DEFAULT_CONFIG})")
    pinging = argparse.ArgumentParser(add_help=False)
    pinging.add_argument("--pings", help="ping the monitoring targets of this 0600 JSON file (fail on a failure)")
    pinging.add_argument("--ping-start", action="store_true", help="with --pings: ping start before the run")
    pinging.add_argument("--ping-success", action="store_true", help="with --pings: ping success after a good run")
    parser = argparse.ArgumentParser(prog="lifeboat", parents=[common],
                                     description="Backups of databases and Docker volumes on this host: made, proven, "
                                                 "copied off site, watched.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    backup = commands.add_parser("backup", parents=[common, pinging], help="dump jobs' databases into new archives")
    backup.add_argument("--job", action="append", help="a job to run (repeat for several; all jobs when omitted)")
    verify = commands.add_parser("verify", parents=[common, pinging], help="prove archives against their manifests")
    verify.add_argument("--job", help="only this job (all jobs when omitted)")
    verify.add_argument("--select", choices=_verify.SELECTIONS, help="which archives (default: the job's setting)")
    verify.add_argument("--level", choices=(_verify.AUTO, *_verify.LEVELS),
                        help="how far to go (default: the job's setting; auto: structure, or checksum for "
                             "encrypted archives this host cannot decrypt)")
    prune = commands.add_parser("prune", parents=[common, pinging], help="apply the jobs' retention")
    prune.add_argument("--job", help="only this job (all jobs when omitted)")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    copy = commands.add_parser("copy", parents=[common, pinging],
                               help="copy verified archives to the jobs' off-site bucket and prune it there")
    copy.add_argument("--job", help="only this job (all jobs with an enabled offsite section when omitted)")
    fetch = commands.add_parser("fetch", parents=[common],
                                help="bring a job's archive back from its bucket, proven against its manifest")
    fetch.add_argument("--job", required=True, help="the job whose archive to fetch")
    fetch.add_argument("--archive", help="an archive file name (default: the newest verified one in the bucket)")
    fetch.add_argument("--directory", help="where to put it (default: the job's destination)")
    status = commands.add_parser("status", parents=[common],
                                 help="backup health, exit code 0/1/2/3 (OK/WARNING/CRITICAL/UNKNOWN)")
    status.add_argument("--job", help="only this job (all jobs when omitted)")
    status.add_argument("--metrics-file", help="write node_exporter textfile metrics here (default: the config's)")
    commands.add_parser("check", parents=[common], help="check the config and exit (0 when it is valid)")
    restart = commands.add_parser("restart-stopped", parents=[common],
                                  help="start the containers a killed backup run left stopped")
    restart.add_argument("--job", help="only this job's destination (all jobs' when omitted)")
    _notify.add_arguments(commands.add_parser("notify", help="alert about a failed unit (lifeboat-notify@.service)"))
    ingress = commands.add_parser("ingress-check", help="check a cloudflared config's ingress rules (exit 0: they pass)")
    ingress.add_argument("file", help="cloudflared's config file, e.g. /etc/cloudflared/config.yml")
    ingress.add_argument("--url", action="append", default=[], help="say which rule this URL reaches (repeatable)")
    _healthcheck.add_arguments(commands.add_parser(
        "healthcheck", help="run the health probes once: alerts on each change, metrics (lifeboat-healthcheck.timer)"))
    _proxy_renew.add_arguments(commands.add_parser(
        "proxy-renew", help="renew the reverse proxy's ACME certificates that are due (lifeboat-proxy-renew.timer)"))
    return parser


def main(argv: t.Sequence[str] | None = None, output: Output | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "notify":  # its own JSON settings (--config), not the jobs' configuration
        return _notify.run(args.config, args.unit)
    if args.command == "healthcheck":  # its own JSON probes (--config) and journal lines
        return _healthcheck.run(args)
    if args.command == "proxy-renew":  # the reverse proxy's renewal configuration (--config)
        return _proxy_renew.run(args)
    output = output or Output()
    if args.command == "ingress-check":  # cloudflared's file, not the jobs' configuration
        return run_ingress_check(args.file, args.url, output)
    stop_cleanly_on_termination()
    failure_code = NAGIOS_UNKNOWN if args.command == "status" else EXIT_FAILED
    pings = load_pings(args, output)
    label = run_label(args)
    if pings and args.ping_start:
        ping(pings, "start", f"{label}: {args.command} started", output)
    code = run_command(args, output, failure_code)
    if pings and code != EXIT_OK:
        last = next((line for line in reversed(output.tail) if line.startswith("error: ")), "")
        ping(pings, "fail", f"{label}: {last[len('error: '):] or args.command + ' failed'}", output,
             "\n".join(output.tail))
    elif pings and args.ping_success:
        ping(pings, "success", f"{label}: done", output)
    return code


def run_command(args: argparse.Namespace, output: Output, failure_code: int) -> int:
    try:
        if args.command == "restart-stopped" and not hasattr(args, "config") and not os.path.exists(DEFAULT_CONFIG):
            return run_restart_stopped(None, args, output)  # a host with no config: the notes need none
        config = _config.load(getattr(args, "config", DEFAULT_CONFIG))
        return COMMANDS[args.command](config, args, output)
    except LifeboatError as exc:
        output.line(f"{args.command} failed: {exc}" if args.command != "status" else f"LIFEBOAT UNKNOWN - {exc}",
                    "error")
    except Exception as exc:  # noqa: BLE001 - a bug of ours: one line, the traceback only when asked for
        output.line(f"{args.command} failed: unexpected error: {one_line(exc)}", "error")
        if os.environ.get("LIFEBOAT_DEBUG"):
            output.stream.write(redact(traceback.format_exc()))
    return failure_code


def load_pings(args: argparse.Namespace, output: Output) -> _pings.Targets | None:
    """The monitoring targets of ``--pings``; a file that cannot be read is a warning: the backup still runs."""
    if not getattr(args, "pings", None):
        return None
    try:
        targets = _pings.load_file(args.pings)
    except LifeboatError as exc:
        output.line(f"no monitoring pings: {exc}", "warning")
        return None
    register_secret(*targets.secrets())  # no line of ours repeats a URL
    return targets


def run_label(args: argparse.Namespace) -> str:
    """``lifeboat: journal on db1``: what a ping's message names."""
    jobs = args.job if isinstance(getattr(args, "job", None), list) else [getattr(args, "job", None) or "all jobs"]
    return f"lifeboat: {', '.join(jobs)} on {os.uname().nodename}"


def ping(targets: _pings.Targets, state: str, message: str, output: Output, log_tail: str = "") -> None:
    for problem in _pings.send(targets, state, message, log_tail):
        output.line(f"monitoring ping {state} not delivered: {problem}", "warning")


def run_ingress_check(path: str, urls: list[str], output: Output) -> int:
    """The collection's ingress check (as the cloudflare_tunnel role runs it) on a config file: one line per rule
    and per URL, or one line saying what is wrong."""
    try:
        with open(path, encoding="utf-8") as handle:
            ingress = _ingress.check(_ingress.load_yaml(handle.read()))
        for warning in ingress.warnings:
            output.line(warning, "warning")
        for rule in ingress.rules:
            output.line(rule.label())
        for url in urls:
            output.line(f"{url} -> {ingress.rules[ingress.match(url)].label()}")
    except OSError as exc:
        output.line(f"ingress-check failed: cannot read {path}: {exc.strerror}", "error")
        return EXIT_FAILED
    except LifeboatError as exc:
        output.line(f"ingress-check failed: {path}: {exc}", "error")
        return EXIT_FAILED
    return EXIT_OK


def restart_first(output: Output) -> None:
    """What every backup and verify does first: start the containers a killed run left stopped (warning lines)."""
    for line in restart_before_run():
        output.line(line, "warning")


def run_backup(config: _config.Config, args: argparse.Namespace, output: Output) -> int:
    restart_first(output)
    jobs = [config.job(name) for name in dict.fromkeys(args.job)] if args.job else config.selected(None)
    if len(jobs) == 1:
        backup_job(jobs[0], output)  # its error is the command's: "backup failed: ..."
        return EXIT_OK
    failures: dict[str, str] = {}
    for job in jobs:
        if stop_requested():
            failures[job.name] = "not started: lifeboat was asked to stop"
            continue
        try:
            backup_job(job, output)
        except Exception as exc:  # noqa: BLE001 - one job's failure, whatever it is, must not stop the others
            failures[job.name] = one_line(exc)
    for name, reason in failures.items():
        output.line(f"backup failed: {name}: {reason}", "error")
    if failures:
        output.line(f"backup: {len(failures)} of {len(jobs)} jobs failed", "error")
    return EXIT_FAILED if failures else EXIT_OK


def backup_job(job: _config.Job, output: Output) -> None:
    """One job's run, recorded beside its archives: "started" (with this PID) before the dump, its outcome after."""
    name = job.params["job"]
    output.line(f"{job.name}: dumping {job.engine} {job.database or 'server'} into {job.destination}")
    try:
        os.makedirs(job.destination, mode=0o700, exist_ok=True)
    except OSError:
        pass  # the dump says why it cannot write there
    started = _status.record_start(job.destination, name)
    try:
        request = job.dump_request()  # a password file gone since the last run is a failed run too
        with DumpProgress(output, name, job.destination):
            result = job.source.dump(request)
    except BaseException as exc:
        # `lifeboat status` turns CRITICAL on this record, though the previous archive still looks fresh.
        _status.record_run(job.destination, name, ok=False, failure=one_line(exc), started=started)
        raise
    _status.record_run(job.destination, name, ok=True, started=started)
    if request.archive.key_created:
        output.line(f"{job.name}: {_signing.key_created_note(request.archive.signing_key, job.destination)}", "warning")
    manifest = result["manifest_data"]
    counted, per = job.source.counts_in
    output.line(
        f"{job.name}: wrote {result['archive']} ({_catalog.human_size(manifest['archive']['size'])}, "
        f"{manifest['total_count']} {counted} in {len(manifest['counts'])} {per}) "
        f"in {manifest['duration_seconds']:.1f} s"
    )
    if manifest.get("server", {}).get("stopped_containers"):
        server = manifest["server"]
        output.line(f"{job.name}: {', '.join(server['stopped_containers'])} stopped for "
                    f"{server.get('downtime_seconds') or 0:.1f} s while read")


def run_verify(config: _config.Config, args: argparse.Namespace, output: Output) -> int:
    restart_first(output)
    failed = 0
    for job in config.selected(args.job):
        settings = job.verify
        if not settings["enabled"] and not args.job:
            continue
        trust = job.trust()
        archives = _verify.select_archives(destination=job.destination, job=job.params["job"],
                                           select=args.select or settings["select"], trust=trust)
        decryption = job.decryption()  # a job encrypted with a passphrase file reads its own archives with it
        level = _verify.resolve_level(args.level or settings["level"], archives, decryption)
        request = _verify.VerifyRequest(
            archives=archives, level=level,
            decryption=decryption,
            # A restore test needs the server; a container job's archives are read by the container's own tools.
            connections=({job.engine: job.source.connection(job.params)}
                         if level == "restore" or job.params.get("container") else {}),
            pg_bin_dir=job.params.get("pg_bin_dir"), tools_dir=job.params.get("tools_dir"),
            trust=trust, signing_key_file=job.record_key(),
        )
        request.validate()
        if archives and request.unsigned_records_warning:
            output.line(f"{job.name}: {request.unsigned_records_warning}", "warning")
        if not archives:
            output.line(f"{job.name}: no archive to verify in {job.destination}", "warning")
        for index, archive in enumerate(archives, start=1):
            output.progress(f"{job.name}: verifying {archive.name} ({index}/{len(archives)}, {level})")
            result = _verify.verify_one(archive, request)
            if result["ok"]:
                output.line(f"{job.name}: {archive.name} ok ({level}, {result['duration_seconds']:.1f} s)")
            else:
                failed += 1
                output.line(f"{job.name}: {result['failure']}", "error")
    return EXIT_FAILED if failed else EXIT_OK


def run_prune(config: _config.Config, args: argparse.Namespace, output: Output) -> int:
    for job in config.selected(args.job):
        if not job.retention["enabled"]:
            output.line(f"{job.name}: retention is off for this job")
            continue
        policy = _retention.Policy.from_options(job.retention)  # it takes its own options and ignores "enabled"
        _retention.check_destination(job.destination)
        # Leftovers of killed runs of this job go too (never those of a writer still running).
        plan = _retention.plan_prune(_catalog.scan(job.destination, job.params["job"]), policy,
                                     remove_partials=True, job=job.params["job"])
        summary = plan.as_dict()
        for entry in summary["held"]:
            output.line(f"{job.name}: nothing removed: {entry['reason']}", "warning")
        for entry in summary["unreadable"]:
            output.line(f"{job.name}: kept {entry['name']}: {entry['problem']}; check and remove it by hand", "warning")
        for entry in summary["kept"]:
            output.line(f"{job.name}: keep {entry['name']} ({', '.join(entry['reasons'])})")
        verb = "would remove" if args.dry_run else "remove"
        for entry in summary["removed"]:
            output.line(f"{job.name}: {verb} {entry['name']} ({', '.join(entry['reasons'])})")
        for entry in summary["partials"]:
            if entry["removed"]:
                output.line(f"{job.name}: {verb} {os.path.basename(entry['path'])} (left by an interrupted run)")
        if not args.dry_run:
            _retention.apply_prune(plan)
        output.line(f"{job.name}: {len(summary['removed'])} archives {'would go' if args.dry_run else 'removed'}, "
                    f"{_catalog.human_size(summary['freed_bytes'])} {'to free' if args.dry_run else 'freed'}")
    return EXIT_OK


def run_status(config: _config.Config, args: argparse.Namespace, output: Output) -> int:
    now = _manifest.utc_now()
    reports = []
    for destination, jobs in _by_destination(config.selected(args.job)).items():
        # Each job with its own thresholds, one report per place (its jobs share its free space).
        reports.append(_status.evaluate(
            destination, [job.params["job"] for job in jobs], now=now,
            job_options={job.params["job"]: _status.StatusOptions.from_options(job.status) for job in jobs}))
    # The remote side of each job with an enabled offsite section: its own state, folded into the exit code.
    remote_sides = [(job, _offsite.offsite_health(job.destination, _offsite.Remote.from_options(job.offsite),
                                                  float(job.offsite.get("max_delay_hours") or 26.0), now=now,
                                                  job=job.params["job"]))
                    for job in config.selected(args.job) if job.offsite.get("enabled")]
    if reports:  # the host's containers a killed run left stopped, told once, with the first destination
        reports[0] = _status.with_left_stopped(reports[0], _status.left_stopped_here())
    state = _status.worst([*(report["state"] for report in reports), *(health["state"] for _job, health in remote_sides)])
    metrics_file = args.metrics_file or config.metrics_file
    if metrics_file:
        _prometheus.write_metrics(metrics_file, _status.metrics_text(reports, now) + (_offsite.offsite_metrics_text(
            [(job.destination, health) for job, health in remote_sides]) if remote_sides else ""))
    summaries = [_status.summary_detail(report) for report in reports]
    summaries += [f"{job.name} off site: {health['reasons'][0]['message']}" for job, health in remote_sides
                  if health["reasons"] and health["state"] != _status.OK]
    sys.stdout.write(f"LIFEBOAT {state} - {' | '.join(summaries)}\n")
    for report in reports:
        for job in report["jobs"]:
            newest = job["newest"]
            detail = (f"newest {newest['name']}, {newest['age_hours']:.1f} h old, "
                      f"{'verified' if newest['verified'] else 'not verified'}") if newest else "no archive"
            if job.get("running"):
                detail += f"; a backup run is running since {job['running']['started_at']} (PID {job['running']['pid']})"
            sys.stdout.write(f"{job['job']}: {job['state']}: {detail}\n")
    for job, health in remote_sides:
        sys.stdout.write(f"{job.name}: off site {health['state']}: {_offsite.describe_health(health)}\n")
    return _status.exit_code_for(state)


def run_check(config: _config.Config, args: argparse.Namespace, output: Output) -> int:
    del args  # the config was checked while it was loaded; what runs read first is read now
    for job in config.selected(None):
        job.check_runnable(config.path)
    output.line(f"{config.path}: {len(config.jobs)} job(s) valid: {', '.join(sorted(config.jobs))}")
    return EXIT_OK


def run_restart_stopped(config: _config.Config | None, args: argparse.Namespace, output: Output) -> int:
    """The safety net after a run that could not clean up (SIGKILL): every note of this host whose process is gone,
    then those an older version left in the jobs' destinations (with a config); containers a running backup stopped
    are left to it."""
    places = [notes_dir()]
    if config is not None:
        places += list(_by_destination(config.selected(args.job)))
    failed = False
    for place in dict.fromkeys(places):
        try:
            started = restart_left_stopped(place)
        except LifeboatError as exc:  # one place's failure must not keep the others' containers stopped
            started, failed = getattr(exc, "started", []), True
            output.line(f"restart-stopped failed: {place}: {exc}", "error")
        for name in started:
            output.line(f"started container {name} again (a backup run was killed before it could; its note was in "
                        f"{place})", "warning")
    return EXIT_FAILED if failed else EXIT_OK


def _by_destination(jobs: list[_config.Job]) -> dict[str, list[_config.Job]]:
    grouped: dict[str, list[_config.Job]] = {}
    for job in jobs:
        grouped.setdefault(job.destination, []).append(job)
    return grouped


def run_copy(config: _config.Config, args: argparse.Namespace, output: Output) -> int:
    """Each job with an enabled offsite section: copy its verified archives, then prune the bucket (mirroring the
    local retention, never ahead of it). Runs after verify and before the local prune."""
    failed = 0
    jobs = [job for job in config.selected(args.job) if job.offsite.get("enabled") or args.job]
    for job in jobs:
        if not job.offsite.get("enabled"):
            output.line(f"{job.name}: no enabled offsite section in the config", "error")
            failed += 1
            continue
        remote = _offsite.Remote.from_options(job.offsite)
        try:
            result = _offsite.copy_destination(job.destination, remote, job.params["job"])
        except LifeboatError as exc:
            _offsite.record_copy(job.destination, ok=False, failure=str(exc), job=job.params["job"])
            output.line(f"{job.name}: copy to {remote.url()} failed: {exc}", "error")
            failed += 1
            continue
        _offsite.record_copy(job.destination, ok=True, job=job.params["job"])
        for name in result.copied:
            output.line(f"{job.name}: copied {name} to {remote.url()}")
        for skipped in result.skipped:
            output.line(f"{job.name}: not copied {skipped['name']}: {skipped['reason']}", "warning")
        if job.retention["enabled"]:
            keep = job.offsite.get("remote_keep")
            plan = _offsite.prune_remote(remote, job.destination, _retention.Policy.from_options(job.retention),
                                         job.params["job"], _retention.Policy.from_options(keep) if keep else None)
            for entry in plan.held:
                output.line(f"{job.name}: nothing removed from {remote.url()}: {entry['reason']}", "warning")
            for entry in plan.locked:
                output.line(f"{job.name}: {entry['name']} is locked until {entry['locked_until']}: not removed")
            for entry in plan.remove:
                output.line(f"{job.name}: removed {entry['name']} from {remote.url()} ({', '.join(entry['reasons'])})")
    return EXIT_FAILED if failed else EXIT_OK


def run_fetch(config: _config.Config, args: argparse.Namespace, output: Output) -> int:
    job = config.job(args.job)
    if not job.offsite.get("bucket"):
        raise LifeboatError(f"job {job.name} has no offsite bucket in the config")
    remote = _offsite.Remote.from_options(job.offsite)
    name = args.archive or _offsite.newest_remote(remote, job.params["job"])
    path = _offsite.fetch_archive(remote, name, args.directory or job.destination)
    output.line(f"{job.name}: fetched {path} from {remote.url()} (sha256 checked against its manifest)")
    return EXIT_OK


COMMANDS: dict[str, t.Callable[[_config.Config, argparse.Namespace, Output], int]] = {
    "backup": run_backup, "verify": run_verify, "prune": run_prune, "status": run_status,
    "check": run_check, "restart-stopped": run_restart_stopped, "copy": run_copy, "fetch": run_fetch,
}
