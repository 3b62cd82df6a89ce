#!/usr/bin/env python3
"""Resume benchmark (issue 11 item 6): what a Ferry migration sends after its link was cut in the bulk pass.

Run through bench/resume.sh, which builds, creates the network namespaces and removes them again. It reuses
bench/migration.py's pieces (QMP, Ferry's monitor, the processes, the base image, the shaping, the verification)
with its own namespaces and addresses.

One run: source and destination `ferry run` as migration.py starts them, a 1 GiB raw disk holding 512 MiB of random
data in 1 MiB chunks (written before the guest boots) and the guest's record writer (`write,rate=2M`) as the
workload. The source gets `migrate_set_parameter retry-window 0`, then `migrate -d -b`; once `info migrate`'s
transferred disk passes --cut-at (0.5) of the bulk pass's data, the migration's TCP connection is killed (`ss -K` in
both namespaces; without CONFIG_INET_DIAG_DESTROY the veth goes down and up, a silent cut that the source's watchdog
notices within 20 s). Once the source reports the migration failed and the destination a partial state, the source
gets `migrate -d -b -r` (case resume) or `migrate -d -b` (case restart), and the run waits for the completion and
verifies the guest's records on the destination as migration.py does. Case uncut is the same migration without a cut,
for reference (its "sent" is all it sent).

Figures of a run (bytes unless named otherwise):
  data        the bulk pass's data: 512 MiB plus the guest's records in holes before it began (source log "bulk pass")
  held        what the destination held durably at the cut (its info migrate "Partial state kept: ... N bytes held")
  unconfirmed data - held: what the destination lacked at the cut
  rewritten   what the guest wrote since the interrupted bulk pass began, as QEMU's dirty bitmap saw it: at the resume
              (source log "resume: the guest wrote W bytes since the last pass began"), plus everything sent after the
              resume pass (source log "resume pass: N bytes"), which is the dirty passes and the last pass at the
              switchover, guest writes only; for a restart, the data its new bulk pass found beyond the first one's
              plus everything sent after that bulk pass
  sent        disk bytes sent after the cut: transferred disk of the second migration's info migrate at completion
  bound       unconfirmed + rewritten; ratio = sent / bound (issue 11's target: <= 1.05 for the resume)
  total       first migrate to the destination QEMU's RESUME event; after cut: second migrate to RESUME
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migration as mig  # noqa: E402  (bench/migration.py, beside this file)

mig.NS_SRC, mig.NS_DST = "ferry-rb-src", "ferry-rb-dst"
mig.IF_SRC, mig.IF_DST = "rb-src", "rb-dst"
mig.ADDR_SRC, mig.ADDR_DST = "10.124.0.1", "10.124.0.2"
PORT = mig.MIG_PORT
GIB, MIB = 1 << 30, 1 << 20
log = mig.log


# ---------------------------------------------------------------- reading Ferry

def kbytes(text, name):
    m = re.search(r"^" + re.escape(name) + r": (\d+) kbytes", text, re.M)
    return int(m.group(1)) * 1024 if m else None


def status(text):
    m = re.search(r"^Migration status: (\S+)", text, re.M)
    return m.group(1) if m else ""


def log_from(path, offset):
    """The Ferry log lines written to PATH since byte OFFSET."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def log_size(path):
    return os.path.getsize(path) if os.path.exists(path) else 0


def figures_of_attempt(text):
    """What the source logged of one migration: its bulk pass, or its resume and resume pass."""
    out = {}
    m = re.search(r"bulk pass: disk=\S+ data=(\d+) bytes", text)
    if m:
        out["bulk_data"] = int(m.group(1))
    m = re.search(r"resumed migration \S+ at the destination's checkpoint (-?\d+); (\d+) bytes to send again", text)
    if m:
        out["resumed_checkpoint"], out["resend_bytes"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"resume: the guest wrote (\d+) bytes since the last pass began", text)
    if m:
        out["written_since"] = int(m.group(1))
    m = re.search(r"resume pass: (\d+) bytes of disk data in (\d+) ms", text)
    if m:
        out["resume_pass_bytes"], out["resume_pass_ms"] = int(m.group(1)), int(m.group(2))
    return out


# ---------------------------------------------------------------- the cut

def established(ns):
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Htn", "state", "established",
                          "( dport = :%d or sport = :%d )" % (PORT, PORT)], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def kill_connection(way):
    """Kills the migration's TCP connection: `ss -K` on both ends (a reset, seen at once), else (or with WAY "link")
    the veth goes down (a silent cut; restore() brings it up again). Returns how it cut."""
    for ns in (mig.NS_SRC, mig.NS_DST) if way != "link" else ():
        subprocess.run(["ip", "netns", "exec", ns, "ss", "-HtnK", "state", "established",
                        "( dport = :%d or sport = :%d )" % (PORT, PORT)], capture_output=True, text=True)
    if way != "link" and not established(mig.NS_SRC) and not established(mig.NS_DST):
        return "ss -K"
    if way == "ss":
        raise RuntimeError("ss -K left the migration's connection up (no CONFIG_INET_DIAG_DESTROY?): try --cut auto")
    subprocess.run(["ip", "-n", mig.NS_SRC, "link", "set", mig.IF_SRC, "down"], check=True)
    return "link down"


def restore(how):
    if how == "link down":
        subprocess.run(["ip", "-n", mig.NS_SRC, "link", "set", mig.IF_SRC, "up"], check=True)
        time.sleep(1)  # the veth's carrier


# ---------------------------------------------------------------- the destination's QEMU

class QmpWatch:
    """The destination QEMU's events across its restarts: Ferry starts a destination QEMU per attempt, so a failed
    attempt closes the connection and the next attempt brings another QEMU on the same socket path.

    Threads: one, `qmp-watch-dst` (daemon), started by start(): connects, waits for the close, connects again, until
    stop(); each connection's reader is migration.py's Qmp thread."""

    def __init__(self, path):
        self.path = path
        self.conns = []
        self.stopped = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="qmp-watch-dst", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.stopped:
            try:
                q = mig.Qmp(self.path, timeout_s=2)
            except (RuntimeError, OSError, ValueError):
                continue  # no QEMU yet, or it went while we said hello
            with self.lock:
                self.conns.append(q)
            with q.cv:
                while not q.closed and not self.stopped:
                    q.cv.wait(0.5)

    def event(self, name, since):
        with self.lock:
            conns = list(self.conns)
        for q in conns:
            e = q.event(name, since)
            if e:
                return e
        return None

    def wait_event(self, name, timeout_s, since):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            e = self.event(name, since)
            if e:
                return e
            time.sleep(0.2)
        return None

    def stop(self):
        self.stopped = True
        with self.lock:
            for q in self.conns:
                q.close()


# ---------------------------------------------------------------- one run

class ResumeRun(mig.Run):
    def __init__(self, cfg, case, base, rundir):
        super().__init__(cfg, "ferry", cfg.link, cfg.load, "1g", base, rundir)
        self.case = case
        self.r.update({"case": case, "method": "ferry-" + case})

    def run(self):
        try:
            self.setup_ferry()
            self.dmon = mig.Monitor(self.p("dst-mon.sock"))
            self.wait_workload()
            self.migrate_cut_and_go_on()
        except Exception as e:  # one failed run must not end the series; it is reported as such
            self.r["notes"].append("error: " + str(e))
            log("  error: " + str(e))
        finally:
            if getattr(self, "watch", None):
                self.watch.stop()
            if getattr(self, "dmon", None):
                self.dmon.close()
            self.teardown()
        return self.r

    def info(self, mon):
        return mon.command("info migrate")

    def await_info(self, mon, what, pred, timeout_s):
        deadline = time.time() + timeout_s
        text = ""
        while time.time() < deadline:
            text = self.info(mon)
            if pred(text):
                return text
            time.sleep(0.05)
        raise RuntimeError("%s not seen within %.0f s; last info migrate: %s" % (what, timeout_s, text.strip()[-400:]))

    def migrate_cut_and_go_on(self):
        reply = self.mon.command("migrate_set_parameter retry-window 0")
        if reply.strip():
            raise RuntimeError("ferry monitor refused retry-window 0: " + reply.strip())
        self.watch = QmpWatch(self.p("dst-qmp.sock")).start()
        self.seq0 = mig.last_seq(self.p("src-serial.log"))
        self.t0 = time.time()
        self.b0 = mig.link_bytes(self.link)
        log0 = self.migrate("")
        if self.case == "uncut":
            self.t1 = self.t0
            self.await_completion(log0, self.b0)
            return
        self.cut_at_share_of_bulk(log0)
        self.t1 = time.time()
        b1 = mig.link_bytes(self.link)
        log1 = self.migrate("-r " if self.case == "resume" else "")
        self.await_completion(log1, b1)

    def migrate(self, flags):
        """Gives the source `migrate -d -b FLAGS URI`; returns where its log stood, so that only this migration's lines are read."""
        at = log_size(self.p("src.log"))
        command = "migrate -d -b %stcp:%s:%d" % (flags, self.dst_addr, PORT)
        reply = self.mon.command(command)
        if reply.strip():
            raise RuntimeError("ferry monitor refused " + command + ": " + reply.strip())
        return at

    def cut_at_share_of_bulk(self, log0):
        """Kills the connection once --cut-at of the bulk pass's data is sent, then waits for the source to fail and
        the destination to keep its partial state; records what each side says it kept."""
        r = self.r
        deadline = self.t0 + self.cfg.cap
        data = None
        while time.time() < deadline:
            text = self.info(self.mon)
            data = data or figures_of_attempt(log_from(self.p("src.log"), log0)).get("bulk_data")
            sent = kbytes(text, "transferred disk") or 0
            if status(text) not in ("setup", "active"):
                raise RuntimeError("the migration ended before the cut: " + status(text) + " " + text.strip()[-300:])
            if data and sent >= self.cfg.cut_at * data:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("transferred disk never reached %.0f %% of the data within %.0f s" % (self.cfg.cut_at * 100, self.cfg.cap))
        how = kill_connection(self.cfg.cut)
        t_cut = time.time()
        r.update({"cut": how, "cut_s": round(t_cut - self.t0, 3), "data": data, "sent_at_cut": sent,
                  "seq_at_cut": mig.last_seq(self.p("src-serial.log")) - self.seq0})
        log("  cut (%s) at %.1f s, %d of %d MiB sent" % (how, t_cut - self.t0, sent >> 20, data >> 20))

        failed = self.await_info(self.mon, "the source's failure", lambda t: status(t) == "failed", 60)
        r["src_failed_after_cut_s"] = round(time.time() - t_cut, 3)
        m = re.search(r"^ferry wire bytes: (\d+) bytes", failed, re.M)
        r["wire_before_failure"] = int(m.group(1)) if m else None
        r["src_info_after_cut"] = failed.strip()
        m = re.search(r"Resumable: migration \S+, (\d+) bytes owed", failed)
        r["owed"] = int(m.group(1)) if m else None
        restore(how)
        # After a silent cut the destination notices when its read times out (120 s), or at once when what it
        # sends next meets the source host's reset
        held_text = self.await_info(self.dmon, "the destination's partial state", lambda t: "Partial state kept" in t,
                                    60 if how == "ss -K" else 150)
        m = re.search(r"Partial state kept: migration \S+, (\d+) bytes held", held_text)
        r["held"] = int(m.group(1))
        r["dst_info_after_cut"] = held_text.strip()

    def await_completion(self, log_at, wire_at):
        """Waits for the migration given at self.t1 to complete and the destination QEMU to run; records the figures
        and verifies the guest's records on the destination."""
        r = self.r
        seq1 = mig.last_seq(self.p("src-serial.log"))
        done = self.await_info(self.mon, "the migration's end",
                               lambda t: status(t) in ("completed", "failed", "cancelled"), self.cfg.cap)
        r["src_info_end"] = done.strip()
        if status(done) != "completed":
            raise RuntimeError("the migration ended " + status(done))
        r["sent"] = kbytes(done, "transferred disk")
        r["seq_during"] = mig.last_seq(self.p("src-serial.log")) - seq1
        resume = self.watch.wait_event("RESUME", 30, self.t1)
        r["wire_after_cut"] = mig.link_bytes(self.link) - wire_at
        r["wire_bytes"] = mig.link_bytes(self.link) - self.b0
        second = figures_of_attempt(log_from(self.p("src.log"), log_at))
        r["second"] = second
        if resume is None:
            r["notes"].append("the destination QEMU sent no RESUME")
            return
        r["converged"] = True
        r["total_s"] = round(resume["t"] - self.t0, 3)
        r["after_cut_s"] = round(resume["t"] - self.t1, 3)
        if self.case == "uncut":
            r["data"] = second.get("bulk_data")
        else:
            self.bound(r, second)
        self.verify_write()

    def bound(self, r, second):
        r["unconfirmed"] = r["data"] - r["held"]
        if r.get("wire_before_failure"):
            r["lost_in_flight"] = r["wire_before_failure"] - r["held"]   # sent, but in no checkpoint the destination made durable
        # After its first pass (the resume pass, or the restart's bulk pass) a migration sends only what the guest
        # wrote since that pass began: its dirty passes and the last pass at the switchover.
        r["first_pass"] = second.get("resume_pass_bytes") if self.case == "resume" else second.get("bulk_data")
        r["after_first_pass"] = r["sent"] - r["first_pass"]
        if self.case == "resume":
            r["rewritten"] = second["written_since"] + r["after_first_pass"]
        else:
            r["rewritten"] = max(0, second["bulk_data"] - r["data"]) + r["after_first_pass"]
        r["bound"] = r["unconfirmed"] + r["rewritten"]
        r["ratio"] = round(r["sent"] / r["bound"], 4) if r["bound"] else None
        narrow(r)


def narrow(r):
    """The bound with "rewritten" counted from the cut only (issue 11's wording): less the guest's records written
    between the first migrate and the cut (heartbeat seq, 4 KiB each), which QEMU's bitmap also holds."""
    if r.get("bound") and r.get("seq_at_cut") is not None:
        r["bound_from_cut"] = r["bound"] - r["seq_at_cut"] * 4096
        r["ratio_from_cut"] = round(r["sent"] / r["bound_from_cut"], 4)


# ---------------------------------------------------------------- series and report

def med_range(values, fmt):
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt(vals[0])
    return "%s (%s-%s)" % (fmt(statistics.median(vals)), fmt(min(vals)), fmt(max(vals)))


def markdown(results):
    mib = lambda v: "%.1f" % (v / MIB)
    for r in results:
        narrow(r)
    out = ["| case | runs | verified | disk sent after the cut (uncut: all) MiB | bound MiB (unconfirmed + rewritten) | ratio | ratio, rewritten from the cut | total s | second migrate to RESUME s |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for case in ("resume", "restart", "uncut"):
        rs = [r for r in results if r["case"] == case]
        if not rs:
            continue
        ok = [r for r in rs if r.get("converged")]
        out.append("| %s | %d | %d | %s | %s | %s | %s | %s | %s |" % (
            case, len(rs), sum(1 for r in rs if r["verified"]),
            med_range([r.get("sent") for r in ok], mib), med_range([r.get("bound") for r in ok], mib),
            med_range([r.get("ratio") for r in ok], lambda v: "%.3f" % v),
            med_range([r.get("ratio_from_cut") for r in ok], lambda v: "%.3f" % v),
            med_range([r.get("total_s") for r in ok], lambda v: "%.1f" % v),
            med_range([r.get("after_cut_s") for r in ok], lambda v: "%.1f" % v)))
    out += ["", "| case | run | cut | cut at s | sent at cut MiB | data MiB | held MiB | lost in flight MiB | unconfirmed MiB | source owed MiB | rewritten MiB | first pass MiB | sent MiB | ratio | total s | verified |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        g = lambda k: r.get(k)
        m = lambda k: mib(r[k]) if r.get(k) is not None else "-"
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["case"], g("run"), g("cut") or "-", g("cut_s") or "-", m("sent_at_cut"), m("data"), m("held"), m("lost_in_flight"),
            m("unconfirmed"), m("owed"),
            m("rewritten"), m("first_pass"), m("sent"), "%.3f" % r["ratio"] if r.get("ratio") else "-", g("total_s") or "-",
            "yes" if r["verified"] else "no: " + "; ".join(r["notes"])[:120]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cases", default="resume,restart,uncut", help="uncut: the same migration without a cut, for reference")
    ap.add_argument("--rate", default="1gbit", help="tc tbf rate of the link (both ends)")
    ap.add_argument("--load", default="2M", help="the guest's write rate (its workload write,rate=LOAD)")
    ap.add_argument("--seconds", type=int, default=60, help="how long the guest writes")
    ap.add_argument("--cap", type=float, default=120, help="bound of each wait for the migration, in seconds")
    ap.add_argument("--cut-at", type=float, default=0.5, help="cut when this share of the bulk pass's data is sent")
    ap.add_argument("--cut", choices=("auto", "ss", "link"), default="auto",
                    help="ss: ss -K only; link: the veth down and up (a silent cut); auto: ss -K, else link")
    ap.add_argument("--out", default=os.path.join(mig.ROOT, "bench/out"))
    ap.add_argument("--ferry-home", default=mig.ROOT)
    ap.add_argument("--keep", action="store_true", help="keep every run's directory (default: only failed ones)")
    ap.add_argument("--report", metavar="JSONL", help="only print the tables of an earlier series")
    cfg = ap.parse_args()
    if cfg.report:
        with open(cfg.report) as f:
            print(markdown([json.loads(line) for line in f if line.strip()]))
        return
    cfg.link = "netns-" + cfg.rate
    cases = cfg.cases.split(",")
    os.makedirs(cfg.out, exist_ok=True)
    work = os.path.join(cfg.out, "work")
    os.makedirs(work, exist_ok=True)
    base = os.path.join(work, "base-1g-512m.raw")
    mig.make_base(base, GIB, 512 * MIB, seed=42)
    mig.shape(cfg.link)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results_path = os.path.join(cfg.out, "resume-%s.jsonl" % stamp)
    log("resume series: cases=%s runs=%d rate=%s load=%s guest-seconds=%d cut-at=%.2f -> %s; uptime: %s"
        % (cases, cfg.runs, cfg.rate, cfg.load, cfg.seconds, cfg.cut_at, results_path,
           subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()))
    results = []
    for i in range(cfg.runs):
        for case in cases:  # alternating, so that drift on the machine hits both cases alike
            rundir = os.path.join(work, "resume-%s-%d" % (case, i))
            shutil.rmtree(rundir, ignore_errors=True)
            load_before = os.getloadavg()[0]
            log("run %s #%d (load %.2f)" % (case, i + 1, load_before))
            r = ResumeRun(cfg, case, base, rundir).run()
            r.update({"run": i + 1, "load1_before": load_before, "rate": cfg.rate})
            log("  -> verified=%s sent=%s bound=%s ratio=%s total=%s s after-cut=%s s %s"
                % (r["verified"], r.get("sent"), r.get("bound"), r.get("ratio"), r.get("total_s"), r.get("after_cut_s"),
                   "; ".join(r["notes"])))
            results.append(r)
            with open(results_path, "a") as f:
                f.write(json.dumps(r) + "\n")
            if r.get("converged") and r["verified"] and not cfg.keep:
                shutil.rmtree(rundir, ignore_errors=True)
    table = markdown(results)
    with open(os.path.join(cfg.out, "resume-table-%s.md" % stamp), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
