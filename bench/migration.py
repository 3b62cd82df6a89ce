#!/usr/bin/env python3
"""Migration benchmark: Ferry vs QEMU 7.2's block migration vs the libvirt way vs a RAM-only floor.

Run through bench/migration.sh, which builds, creates the network namespaces and removes them again.
Every cell runs the same demo guest, disk and workload; every method is measured the same way:

  total     = from the first migration command on the source to the destination QEMU's RESUME event
  downtime  = source QEMU's QMP STOP event to destination QEMU's RESUME event (QMP timestamps)
  wire      = bytes on the link (veth tx+rx at the source end, or lo tx in the source namespace)
  ferry cpu = CPU seconds of the two Ferry JVMs (utime+stime, not their QEMUs) from the first command to RESUME;
              "ferry-tls" is Ferry with TLS 1.3 on the stream (--tls), made with bin/ferry certs
  converged = migration completed within the cap (else cancelled)
  verified  = idle: destination disk == source disk after switchover (cmp) and the guest heartbeats on
              the destination; write: guest prints write-done on the destination and every block of the
              destination disk is a valid record or equals the starting image, highest seq == write-done seq
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NS_SRC, NS_DST = "ferry-bench-src", "ferry-bench-dst"
IF_SRC, IF_DST = "fb-src", "fb-dst"
ADDR_SRC, ADDR_DST = "10.123.0.1", "10.123.0.2"
MIG_PORT, NBD_PORT = 4444, 10809
MEM_MIB = 256


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


# ---------------------------------------------------------------- QMP

class Qmp:
    """One QMP connection: commands, and every event kept with its QMP timestamp."""

    def __init__(self, path, timeout_s=60):
        deadline = time.time() + timeout_s
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise RuntimeError("QMP connect failed: path=" + path)
                time.sleep(0.1)
        self.path = path
        self.file = self.sock.makefile("rb")
        self.events = []
        self.replies = []
        self.cv = threading.Condition()
        self.closed = False
        json.loads(self.file.readline())  # greeting
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.cmd("qmp_capabilities")

    def _read(self):
        try:
            for line in self.file:
                msg = json.loads(line)
                with self.cv:
                    if "event" in msg:
                        ts = msg["timestamp"]
                        msg["t"] = ts["seconds"] + ts["microseconds"] / 1e6
                        self.events.append(msg)
                    else:
                        self.replies.append(msg)
                    self.cv.notify_all()
        except (OSError, ValueError):
            pass
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def cmd(self, name, timeout_s=60, **args):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        with self.cv:
            self.replies.clear()
        self.sock.sendall((json.dumps(req) + "\n").encode())
        deadline = time.time() + timeout_s
        with self.cv:
            while not self.replies:
                if self.closed:
                    raise RuntimeError("QMP closed during " + name + ": path=" + self.path)
                left = deadline - time.time()
                if left <= 0:
                    raise RuntimeError("QMP timeout: command=" + name)
                self.cv.wait(left)
            reply = self.replies.pop(0)
        if "error" in reply:
            raise RuntimeError("QMP " + name + " failed: " + reply["error"].get("desc", str(reply)))
        return reply.get("return")

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})

    def event(self, name, since=0.0, pred=None):
        with self.cv:
            for e in self.events:
                if e["event"] == name and e["t"] >= since and (pred is None or pred(e)):
                    return e
        return None

    def wait_event(self, name, timeout_s, since=0.0, pred=None):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            e = self.event(name, since, pred)
            if e:
                return e
            with self.cv:
                if self.closed:
                    return self.event(name, since, pred)
                self.cv.wait(min(0.5, max(0.01, deadline - time.time())))
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- processes

class Proc:
    def __init__(self, name, ns, argv, logpath, env=None):
        self.name = name
        full = (["ip", "netns", "exec", ns] if ns else []) + argv
        self.logf = open(logpath, "ab")
        self.p = subprocess.Popen(full, stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env, start_new_session=True)

    def alive(self):
        return self.p.poll() is None

    def stop(self, grace_s=20):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self.logf.close()


def cpu_seconds(pid):
    """utime+stime of one process, not of its children: a Ferry JVM without its QEMU."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid):
    """utime+stime of each thread of one process, summed by role: 'jit' (C1/C2 compiler threads), 'gc'
    (the VM thread, which runs the serial collector, and GC workers), 'app' (all others: Ferry's own
    platform threads and the carriers of its virtual threads)."""
    roles = {"jit": 0.0, "gc": 0.0, "app": 0.0}
    task_dir = "/proc/%d/task" % pid
    for tid in os.listdir(task_dir):
        try:
            with open(os.path.join(task_dir, tid, "comm")) as f:
                comm = f.read().strip()
            with open(os.path.join(task_dir, tid, "stat")) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue   # the thread ended between the listing and the read
        role = "jit" if comm.startswith(("C1 Compiler", "C2 Compiler")) else \
            "gc" if comm.startswith(("VM Thread", "GC Thread", "G1 ", "GC ")) else "app"
        roles[role] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return roles


def serial_line(path, text):
    if not os.path.exists(path):
        return None
    found = None
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("latin-1")
            if text in line:
                found = line.strip()
    return found


def await_serial(path, text, timeout_s, procs=()):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        line = serial_line(path, text)
        if line:
            return line
        for p in procs:
            if not p.alive():
                raise RuntimeError(p.name + " exited (" + str(p.p.returncode) + ") before serial printed '" + text + "'")
        time.sleep(0.2)
    return None


def last_seq(path):
    line = serial_line(path, "heartbeat seq=")
    return int(line.split("seq=")[1].split()[0]) if line else 0


def count_serial(path, text):
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        return sum(1 for raw in f if text.encode() in raw)


# ---------------------------------------------------------------- link

def link_bytes(link):
    """Bytes on the link so far: veth tx+rx at the source end, or lo tx in the source namespace."""
    dev = "lo" if link == "loopback" else IF_SRC
    out = subprocess.run(["ip", "-n", NS_SRC, "-s", "-j", "link", "show", dev], capture_output=True, text=True, check=True)
    stats = json.loads(out.stdout)[0]["stats64"]
    return stats["tx"]["bytes"] if dev == "lo" else stats["tx"]["bytes"] + stats["rx"]["bytes"]


def shape(link):
    for ns, dev in ((NS_SRC, IF_SRC), (NS_DST, IF_DST)):
        subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"], capture_output=True)
        if link.startswith("netns-"):
            rate = link[len("netns-"):]
            subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
                            "burst", "256kb", "latency", "50ms"], check=True)


# ---------------------------------------------------------------- images

def make_base(path, size, data_bytes, seed):
    """SIZE bytes raw, sparse, with DATA_BYTES of random data in 1 MiB chunks at scattered offsets."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    rng = random.Random(seed)
    chunk = 1 << 20
    with open(path + ".tmp", "wb") as f:
        f.truncate(size)
        for idx in sorted(rng.sample(range(size // chunk), data_bytes // chunk)):
            f.seek(idx * chunk)
            f.write(rng.randbytes(chunk))
    os.replace(path + ".tmp", path)


def copy_sparse(src, dst):
    """A run's own copy, written back before the guest boots: no method pays for this copy's writeback
    when its QEMU flushes the disk at the switchover."""
    subprocess.run(["cp", "--sparse=always", src, dst], check=True)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def allocated_bytes(path):
    return os.stat(path).st_blocks * 512


# ---------------------------------------------------------------- one run

class Run:
    def __init__(self, cfg, method, link, load, disk, base, rundir):
        self.cfg, self.method, self.link, self.load, self.disk, self.base = cfg, method, link, load, disk, base
        self.dir = rundir
        os.makedirs(rundir, exist_ok=True)
        self.procs = []
        self.qmps = []
        self.src_ns = NS_SRC
        self.dst_ns = NS_SRC if link == "loopback" else NS_DST
        self.dst_addr = "127.0.0.1" if link == "loopback" else ADDR_DST
        self.r = {"method": method, "link": link, "load": load, "disk": disk, "converged": False, "verified": False,
                  "notes": []}

    def p(self, name):
        return os.path.join(self.dir, name)

    def append(self):
        if self.load == "idle":
            work = "idle"
        else:
            work = "write,rate=%s,seconds=%d" % (self.load, self.cfg.seconds)
        return "console=ttyS0 quiet ferry.workload=" + work

    def guest_args(self):
        g = os.path.join(ROOT, "guest/out")
        return ["-m", str(MEM_MIB), "-kernel", g + "/vmlinuz", "-initrd", g + "/initramfs.cpio.gz", "-append", self.append()]

    def qemu_argv(self, disk_path, side, extra=()):
        return ["qemu-system-x86_64", "-name", "demo", "-machine", "pc", "-accel", "tcg", "-smp", "1", "-nodefaults",
                "-display", "none", *self.guest_args(),
                "-drive", "file=%s,format=raw,if=virtio,id=disk0" % disk_path,
                "-serial", "file:" + self.p(side + "-serial.log"),
                "-qmp", "unix:%s,server=on,wait=off" % self.p(side + "-qmp.sock"), *extra]

    def start(self, side, ns, argv):
        proc = Proc(side, ns, argv, self.p(side + ".log"))
        self.procs.append(proc)
        return proc

    def qmp(self, side):
        q = Qmp(self.p(side + "-qmp.sock"))
        self.qmps.append(q)
        return q

    # -- the methods: each starts both sides, waits for the workload, migrates; sets self.src/self.dst QMP

    def is_ferry(self):
        return self.method.startswith(("ferry", "base-ferry"))

    def ferry_home(self):
        """base-ferry and base-ferry-tls run the --baseline checkout, the others this one (or --ferry-home)."""
        return self.cfg.baseline if self.method.startswith("base-") else self.cfg.ferry_home

    def run(self):
        step = self.method[len("base-"):] if self.method.startswith("base-") else self.method
        try:
            getattr(self, "setup_" + step.replace("-", "_"))()
            self.wait_workload()
            self.seq0 = last_seq(self.p("src-serial.log"))
            self.cpu0 = self.ferry_cpu()
            self.roles0 = self.ferry_cpu_roles()
            self.t0 = time.time()
            self.b0 = link_bytes(self.link)
            ok = getattr(self, "migrate_" + step.replace("-", "_"))()
            self.finish(ok)
        except Exception as e:  # one failed run must not end the matrix; it is reported as such
            self.r["notes"].append("error: " + str(e))
            log("  error: " + str(e))
        finally:
            self.teardown()
        return self.r

    def ferry_cpu(self):
        """CPU seconds of both Ferry JVMs so far (their pids are the launchers': ip netns exec and bin/ferry exec)."""
        if not self.is_ferry():
            return None
        try:
            return sum(cpu_seconds(p.p.pid) for p in self.procs if p.name in ("src", "dst"))
        except (OSError, ValueError, IndexError):
            return None

    def ferry_cpu_roles(self):
        """Per side and thread role (thread_cpu_seconds) so far: where Ferry's CPU goes (JIT, GC, its own threads)."""
        if not self.is_ferry():
            return None
        try:
            return {p.name: thread_cpu_seconds(p.p.pid) for p in self.procs if p.name in ("src", "dst")}
        except (OSError, ValueError, IndexError):
            return None

    def wait_workload(self):
        ser = self.p("src-serial.log")
        mark = "heartbeat idle=" if self.load == "idle" else "phase=write-start"
        if not await_serial(ser, mark, 180, [p for p in self.procs]):
            raise RuntimeError("source guest did not start its workload: " + mark)
        if self.load != "idle" and not await_serial(ser, "heartbeat seq=", 30, self.procs):
            raise RuntimeError("source guest wrote no heartbeat")
        self.write_start = time.time()
        time.sleep(2)

    def cap_s(self):
        if self.load == "idle":
            return self.cfg.cap
        # the guest stops writing after --seconds; a migration still running then is not converging
        return max(10.0, min(self.cfg.cap, self.cfg.seconds - (time.time() - self.write_start) - 8))

    # Ferry ---------------------------------------------------------------

    def ferry_argv(self, side, disk_path, extra=()):
        return [os.path.join(self.ferry_home(), "bin/ferry"), "run", "-name", "demo", *self.guest_args(),
                "-drive", "file=%s,format=raw,if=virtio,id=disk0" % disk_path,
                "-monitor", "unix:%s,server,nowait" % self.p(side + "-mon.sock"),
                "-serial", "file:" + self.p(side + "-serial.log"), "-display", "none",
                "--runtime-dir", self.p(side + "-run"),
                "--qemu-arg", "-qmp", "--qemu-arg", "unix:%s,server=on,wait=off" % self.p(side + "-qmp.sock"), *extra]

    def setup_ferry(self, src_extra=(), dst_extra=()):
        self.src_disk, self.dst_disk = self.p("src.raw"), self.p("dst.raw")
        copy_sparse(self.base, self.src_disk)
        self.start("dst", self.dst_ns, self.ferry_argv("dst", self.dst_disk,
                                                        ["-incoming", "tcp:%s:%d" % (self.dst_addr, MIG_PORT), *dst_extra]))
        self.start("src", self.src_ns, self.ferry_argv("src", self.src_disk, src_extra))
        # Ferry starts the destination's QEMU only once the migration's handshake arrived: connect from
        # the moment migrate is issued, in the background, so that no event is missed
        self.src = self.qmp("src")
        self.mon = Monitor(self.p("src-mon.sock"))

    def migrate_ferry(self):
        self.dst_connect = threading.Thread(target=self._connect_dst, daemon=True)
        self.dst_connect.start()
        reply = self.mon.command("migrate -d -b tcp://%s:%d" % (self.dst_addr, MIG_PORT))
        if reply.strip():
            raise RuntimeError("ferry monitor refused migrate: " + reply.strip())
        cap = self.cap_s()
        deadline = self.t0 + cap
        info = {}
        self.phases = []
        while time.time() < deadline:
            info = parse_info(self.mon.command("info migrate"))
            phase = info.get("ferry phase")
            if not self.phases or self.phases[-1][1] != "ferry " + str(phase):
                self.phases.append((round(time.time() - self.t0, 3), "ferry " + str(phase)))
            st = info.get("Migration status", "")
            if st == "completed" or st.startswith("failed") or st == "cancelled":
                break
            time.sleep(0.1)
        self.r["ferry_info"] = info
        st = info.get("Migration status", "")
        if st == "completed":
            self.r["reported_downtime_ms"] = num(info.get("downtime"))
            self.r["reported_total_ms"] = num(info.get("total time"))
            return True
        if st.startswith("failed"):
            self.r["notes"].append("ferry: " + st + " " + info.get("ferry error", ""))
            return False
        self.r["notes"].append("not completed within %.0f s (phase %s, throttle %s); cancelled"
                               % (cap, info.get("ferry phase"), info.get("ferry write throttle")))
        self.mon.command("migrate_cancel")
        return False

    def setup_ferry_tls(self):
        """Ferry with TLS 1.3 on the stream, in the one-line form on both sides (-global migration.tls-creds)."""
        tls = lambda endpoint: ["-object", "tls-creds-x509,id=tls0,dir=%s,endpoint=%s" % (self.cfg.pki, endpoint),
                                "-global", "migration.tls-creds=tls0"]
        self.setup_ferry(tls("client"), tls("server"))

    def migrate_ferry_tls(self):
        return self.migrate_ferry()

    def _connect_dst(self):
        try:
            q = Qmp(self.p("dst-qmp.sock"), timeout_s=self.cfg.cap + 30)
            self.dst_connected_at = time.time()
            self.qmps.append(q)
            self.dst = q
        except RuntimeError as e:
            self.r["notes"].append(str(e))

    # QEMU -b -------------------------------------------------------------

    def setup_qemu_b(self):
        self.src_disk, self.dst_disk = self.p("src.raw"), self.p("dst.raw")
        copy_sparse(self.base, self.src_disk)
        with open(self.dst_disk, "wb") as f:
            f.truncate(os.path.getsize(self.base))
        self.start("dst", self.dst_ns, self.qemu_argv(self.dst_disk, "dst", ["-incoming", "tcp:%s:%d" % (self.dst_addr, MIG_PORT)]))
        self.start("src", self.src_ns, self.qemu_argv(self.src_disk, "src"))
        self.dst = self.qmp("dst")
        self.src = self.qmp("src")

    def migrate_qemu_b(self):
        self.src.cmd("migrate-set-capabilities", capabilities=[{"capability": "zero-blocks", "state": True},
                                                                {"capability": "events", "state": True}])
        self.r["notes"].append("capabilities zero-blocks,events; max-bandwidth default 128 MiB/s")
        out = self.src.hmp("migrate -d -b tcp:%s:%d" % (self.dst_addr, MIG_PORT))
        if out.strip():
            raise RuntimeError("migrate -b: " + out.strip())
        return self.poll_qemu_migration()

    def poll_qemu_migration(self, cap=None):
        cap = self.cap_s() if cap is None else cap
        deadline = self.t0 + cap
        info = {}
        while time.time() < deadline:
            info = self.src.cmd("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.25)
        self.r["qemu_info"] = {k: info.get(k) for k in ("status", "total-time", "downtime", "ram", "disk", "error-desc")}
        if info.get("status") == "completed":
            self.r["reported_downtime_ms"] = info.get("downtime")
            self.r["reported_total_ms"] = info.get("total-time")
            return True
        if info.get("status") == "failed":
            self.r["notes"].append("qemu migration failed: " + str(info.get("error-desc")))
            return False
        disk = info.get("disk", {})
        self.r["notes"].append("not completed within %.0f s (status %s, disk remaining %s of %s, transferred %s); cancelled"
                               % (cap, info.get("status"), disk.get("remaining"), disk.get("total"), disk.get("transferred")))
        self.src.cmd("migrate_cancel")
        return False

    # libvirt way ---------------------------------------------------------

    def setup_libvirt(self):
        self.setup_qemu_b_like(incoming="defer")

    def setup_qemu_b_like(self, incoming):
        self.src_disk, self.dst_disk = self.p("src.raw"), self.p("dst.raw")
        copy_sparse(self.base, self.src_disk)
        with open(self.dst_disk, "wb") as f:
            f.truncate(os.path.getsize(self.base))
        self.start("dst", self.dst_ns, self.qemu_argv(self.dst_disk, "dst", ["-incoming", incoming]))
        self.start("src", self.src_ns, self.qemu_argv(self.src_disk, "src"))
        self.dst = self.qmp("dst")
        self.src = self.qmp("src")

    def migrate_libvirt(self):
        cap = self.cap_s()
        deadline = self.t0 + cap
        self.dst.cmd("nbd-server-start", addr={"type": "inet", "data": {"host": self.dst_addr, "port": str(NBD_PORT)}})
        self.dst.cmd("nbd-server-add", device="disk0", writable=True)
        self.dst.cmd("migrate-incoming", uri="tcp:%s:%d" % (self.dst_addr, MIG_PORT))
        self.src.cmd("drive-mirror", device="disk0", target="nbd:%s:%d:exportname=disk0" % (self.dst_addr, NBD_PORT),
                     format="raw", sync="full", mode="existing", **{"job-id": "mirror0"})
        if not self.src.wait_event("BLOCK_JOB_READY", max(0.1, deadline - time.time()), self.t0 - 1):
            jobs = self.src.cmd("query-block-jobs")
            self.r["notes"].append("mirror not READY within %.0f s: %s; cancelled" % (cap, json.dumps(jobs)))
            self.src.cmd("block-job-cancel", device="mirror0", force=True)
            return False
        self.r["mirror_ready_s"] = round(time.time() - self.t0, 2)
        self.src.cmd("migrate-set-capabilities", capabilities=[{"capability": "pause-before-switchover", "state": True},
                                                                {"capability": "events", "state": True}])
        self.src.cmd("migrate", uri="tcp:%s:%d" % (self.dst_addr, MIG_PORT))
        pre = None
        while time.time() < deadline:
            pre = self.src.wait_event("MIGRATION", 0.5, self.t0 - 1, lambda e: e["data"]["status"] in ("pre-switchover", "failed"))
            if pre:
                break
        if not pre or pre["data"]["status"] != "pre-switchover":
            info = self.src.cmd("query-migrate")
            self.r["notes"].append("RAM migration did not reach pre-switchover within %.0f s: %s; cancelled"
                                   % (cap, info.get("status")))
            self.src.cmd("migrate_cancel")
            self.src.cmd("block-job-cancel", device="mirror0", force=True)
            return False
        self.src.cmd("block-job-cancel", device="mirror0")
        if not self.src.wait_event("BLOCK_JOB_COMPLETED", 60, self.t0 - 1):
            self.r["notes"].append("mirror did not complete after block-job-cancel at pre-switchover")
            return False
        self.src.cmd("migrate-continue", state="pre-switchover")
        ok = self.poll_qemu_migration(cap=max(30.0, deadline - self.t0))
        if ok:
            self.dst.wait_event("RESUME", 30, self.t0)
            self.dst.cmd("nbd-server-stop")
        return ok

    # RAM-only floor ------------------------------------------------------

    def setup_ram_only(self):
        self.src_disk = self.dst_disk = self.p("shared.raw")
        copy_sparse(self.base, self.src_disk)
        self.start("dst", self.dst_ns, self.qemu_argv(self.dst_disk, "dst", ["-incoming", "tcp:%s:%d" % (self.dst_addr, MIG_PORT)]))
        self.start("src", self.src_ns, self.qemu_argv(self.src_disk, "src"))
        self.dst = self.qmp("dst")
        self.src = self.qmp("src")

    def migrate_ram_only(self):
        self.src.cmd("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])
        out = self.src.hmp("migrate -d tcp:%s:%d" % (self.dst_addr, MIG_PORT))
        if out.strip():
            raise RuntimeError("migrate: " + out.strip())
        return self.poll_qemu_migration()

    # common end ----------------------------------------------------------

    def timeline(self):
        """Every QMP event of both QEMUs and every Ferry phase change, in seconds after the first command."""
        items = list(getattr(self, "phases", []))
        for side in ("src", "dst"):
            q = getattr(self, side, None)
            if q is None:
                continue
            with q.cv:
                evs = list(q.events)
            for e in evs:
                if e["t"] >= self.t0 - 1:
                    what = e["event"] + ("(" + e["data"]["status"] + ")" if e["event"] == "MIGRATION" else "")
                    items.append((round(e["t"] - self.t0, 3), side + " " + what))
        if getattr(self, "dst_connected_at", None):
            items.append((round(self.dst_connected_at - self.t0, 3), "dst QEMU's QMP socket up"))
        return sorted(items)

    def finish(self, ok):
        r = self.r
        r["timeline"] = self.timeline()
        if self.load != "idle":
            # what the guest really wrote on the source while the migration ran (TCG guests miss their rate)
            seq1 = last_seq(self.p("src-serial.log"))
            r["guest_write_kib_s_during_migration"] = round((seq1 - self.seq0) * 4 / max(0.001, time.time() - self.t0))
        if not ok:
            r["wire_bytes"] = link_bytes(self.link) - self.b0
            r["total_s"] = round(time.time() - self.t0, 2)
            return
        if getattr(self, "dst_connect", None):
            self.dst_connect.join(30)
        resume = self.dst.wait_event("RESUME", 30, self.t0)
        cpu = self.ferry_cpu()
        if cpu is not None and self.cpu0 is not None:
            r["ferry_cpu_s"] = round(cpu - self.cpu0, 2)
        roles = self.ferry_cpu_roles()
        if roles and getattr(self, "roles0", None):
            r["ferry_cpu_roles_s"] = {side: {role: round(v - self.roles0[side][role], 2) for role, v in by_role.items()}
                                      for side, by_role in roles.items() if side in self.roles0}
        stop = self.src.event("STOP", self.t0)
        time.sleep(0.5)  # the last acknowledgements
        r["wire_bytes"] = link_bytes(self.link) - self.b0
        if not resume:
            r["notes"].append("destination never sent RESUME")
            return
        r["converged"] = True
        r["total_s"] = round(resume["t"] - self.t0, 3)
        if stop:
            r["downtime_ms"] = round((resume["t"] - stop["t"]) * 1000, 1)
        else:
            r["notes"].append("source sent no STOP")
        if self.load == "idle":
            self.verify_idle()
        else:
            self.verify_write()

    def verify_idle(self):
        r = self.r
        if self.method == "ram-only":
            same = True
            r["notes"].append("shared image: cmp n/a")
        else:
            same = subprocess.run(["cmp", "-s", self.src_disk, self.dst_disk]).returncode == 0
            if not same:
                r["notes"].append("destination disk differs from source (cmp)")
        before = count_serial(self.p("dst-serial.log"), "heartbeat idle=")
        deadline = time.time() + 15
        alive = False
        while time.time() < deadline:
            if count_serial(self.p("dst-serial.log"), "heartbeat idle=") > before:
                alive = True
                break
            time.sleep(0.5)
        if not alive:
            r["notes"].append("guest printed no heartbeat on the destination")
        r["verified"] = same and alive

    def verify_write(self):
        r = self.r
        dst_ser = self.p("dst-serial.log")
        left = self.cfg.seconds - (time.time() - self.write_start) + 60
        done = await_serial(dst_ser, "phase=write-done", max(30, left))
        if not done:
            r["notes"].append("no write-done on the destination (guest died?)")
            return
        seq = int(done.split("seq=")[1].split()[0])
        dst_proc = [p for p in self.procs if p.name == "dst"][0]
        try:
            dst_proc.p.wait(60)  # the guest powers off; its QEMU (or ferry) exits and flushes
        except subprocess.TimeoutExpired:
            r["notes"].append("destination did not exit after the guest's poweroff")
        java = os.path.join(os.environ["JAVA_HOME"], "bin/java")
        cp = os.path.join(ROOT, "cli/target/ferry.jar") + ":" + os.path.join(ROOT, "bench/target/classes")
        out = subprocess.run([java, "-cp", cp, "BenchVerify", self.dst_disk, self.base, str(seq)],
                             capture_output=True, text=True, timeout=300)
        r["verify"] = out.stdout.strip() + " write-done-seq=%d" % seq
        r["verified"] = out.returncode == 0
        if out.returncode != 0:
            r["notes"].append("verify failed: " + r["verify"] + out.stderr.strip()[-300:])

    def teardown(self):
        for q in self.qmps:
            try:
                if q is getattr(self, "src", None) and not q.closed:
                    q.cmd("quit", timeout_s=5)
            except Exception:
                pass
            q.close()
        if getattr(self, "mon", None):
            self.mon.close()
        for p in reversed(self.procs):
            p.stop()


class Monitor:
    """Ferry's HMP monitor on a unix socket: one command, the text up to the next prompt."""
    PROMPT = b"(ferry) "

    def __init__(self, path, timeout_s=60):
        deadline = time.time() + timeout_s
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise RuntimeError("ferry monitor connect failed: path=" + path)
                time.sleep(0.2)
        self.sock.settimeout(60)
        self._until_prompt()

    def _until_prompt(self):
        buf = b""
        while not buf.endswith(self.PROMPT):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("ferry monitor closed")
            buf += chunk
        return buf[:-len(self.PROMPT)].decode(errors="replace")

    def command(self, line):
        self.sock.sendall(line.encode() + b"\n")
        return self._until_prompt()

    def close(self):
        self.sock.close()


def parse_info(text):
    out = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def num(v):
    try:
        return int(str(v).split()[0])
    except (ValueError, IndexError):
        return None


# ---------------------------------------------------------------- matrix and report

def med_range(values, fmt):
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt(vals[0])
    return "%s (%s-%s)" % (fmt(statistics.median(vals)), fmt(min(vals)), fmt(max(vals)))


def summarize(results):
    cells = {}
    for r in results:
        cells.setdefault((r["link"], r["load"], r["disk"]), {}).setdefault(r["method"], []).append(r)
    rows = []
    for (link, load, disk), methods in cells.items():
        for m, rs in methods.items():
            conv = [r for r in rs if r["converged"]]
            rows.append({
                "link": link, "load": load, "disk": disk, "method": m, "runs": len(rs),
                "converged": sum(1 for r in rs if r["converged"]), "verified": sum(1 for r in rs if r["verified"]),
                "total_s": [r.get("total_s") for r in conv],
                "downtime_ms": [r.get("downtime_ms") for r in conv],
                "wire_bytes": [r.get("wire_bytes") for r in conv] or [r.get("wire_bytes") for r in rs],
                "cpu_s_per_gib": [r["ferry_cpu_s"] / (r["wire_bytes"] / 2 ** 30) for r in conv
                                  if r.get("ferry_cpu_s") is not None and r.get("wire_bytes")],
            })
    return cells, rows


def markdown(rows):
    out = ["| link | load | disk | method | total s | downtime ms | wire MiB | converged | verified | Ferry/this total | Ferry/this downtime | Ferry/this wire |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    med = lambda xs: statistics.median([x for x in xs if x is not None]) if any(x is not None for x in xs) else None
    by_cell = {}
    for row in rows:
        by_cell.setdefault((row["link"], row["load"], row["disk"]), {})[row["method"]] = row
    for row in rows:
        f = by_cell[(row["link"], row["load"], row["disk"])].get("ferry")
        ratio = []
        for key in ("total_s", "downtime_ms", "wire_bytes"):
            a = med(f[key]) if f and f["converged"] else None
            b = med(row[key]) if row["converged"] else None
            ratio.append("%.2f" % (a / b) if a is not None and b else "-")
        if row["method"] == "ferry":
            ratio = ["-", "-", "-"]
        out.append("| %s | %s | %s | %s | %s | %s | %s | %d/%d | %d/%d | %s |" % (
            row["link"], row["load"], row["disk"], row["method"],
            med_range(row["total_s"], lambda v: "%.1f" % v),
            med_range(row["downtime_ms"], lambda v: "%.0f" % v),
            med_range(row["wire_bytes"], lambda v: "%.0f" % (v / 2 ** 20)),
            row["converged"], row["runs"], row["verified"], row["runs"], " | ".join(ratio)))
    cpu = [row for row in rows if row.get("cpu_s_per_gib")]
    if cpu:
        out += ["", "| link | load | disk | method | Ferry CPU s per GiB on the wire (both JVMs) |", "| --- | --- | --- | --- | --- |"]
        out += ["| %s | %s | %s | %s | %s |" % (row["link"], row["load"], row["disk"], row["method"],
                                                med_range(row["cpu_s_per_gib"], lambda v: "%.2f" % v)) for row in cpu]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--methods", default="ferry,qemu-b,libvirt,ram-only")
    ap.add_argument("--links", default=None)
    ap.add_argument("--loads", default=None)
    ap.add_argument("--disks", default=None)
    ap.add_argument("--seconds", type=int, default=None, help="guest write seconds")
    ap.add_argument("--cap", type=float, default=None, help="convergence cap in seconds")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/out"))
    ap.add_argument("--ferry-home", default=ROOT, help="the Ferry checkout whose bin/ferry and jar to run (default: this one)")
    ap.add_argument("--keep", action="store_true", help="keep every run's directory (default: only failed ones)")
    ap.add_argument("--tls", action="store_true", help="Ferry with TLS 1.3 beside plain Ferry (methods ferry,ferry-tls"
                    " unless --methods is given)")
    ap.add_argument("--baseline", metavar="DIR", help="also run methods base-ferry (and base-ferry-tls with --tls) from the"
                    " Ferry checkout DIR (built: cli/target/ferry.jar), interleaved with the others, for before/after figures")
    ap.add_argument("--report", metavar="JSONL", help="only print the table (and Ferry's timelines) of an earlier run")
    cfg = ap.parse_args()
    if cfg.report:
        with open(cfg.report) as f:
            results = [json.loads(line) for line in f if line.strip()]
        print(markdown(summarize(results)[1]))
        for r in results:
            if r["method"].startswith(("ferry", "base-ferry")):
                print("\n%s %s %s %s run %s: converged=%s %s" % (r["method"], r["link"], r["load"], r["disk"], r.get("run"),
                                                                 r["converged"], "; ".join(r["notes"])[:160]))
                if r.get("ferry_cpu_roles_s"):
                    print("  ferry cpu s=%s by thread role %s" % (r.get("ferry_cpu_s"), r["ferry_cpu_roles_s"]))
                print("  " + "  ".join("%.2f %s" % (t, what) for t, what in r.get("timeline", [])
                                       if not what.startswith(("src MIGRATION_PASS", "ferry dirty pass"))))
        return
    links = (cfg.links or ("loopback,netns-1gbit,netns-200mbit" if cfg.full else "netns-1gbit")).split(",")
    loads = (cfg.loads or ("idle,2M,10M,max" if cfg.full else "idle,2M")).split(",")
    disks = (cfg.disks or ("1g,8g" if cfg.full else "1g")).split(",")
    cfg.cap = cfg.cap or (300 if cfg.full else 40)
    cfg.seconds = cfg.seconds or (cfg.cap + 30 if cfg.full else 45)
    if cfg.tls and "--methods" not in sys.argv:
        cfg.methods = "ferry,ferry-tls"
    if cfg.baseline and "--methods" not in sys.argv:
        cfg.methods += "".join("," + "base-" + m for m in cfg.methods.split(",") if m.startswith("ferry"))
    methods = cfg.methods.split(",")
    os.makedirs(cfg.out, exist_ok=True)
    work = os.path.join(cfg.out, "work")
    os.makedirs(work, exist_ok=True)
    cfg.pki = os.path.join(work, "pki")
    if "ferry-tls" in methods and not os.path.exists(os.path.join(cfg.pki, "server-cert.pem")):
        shutil.rmtree(cfg.pki, ignore_errors=True)
        subprocess.run([os.path.join(cfg.ferry_home, "bin/ferry"), "certs", cfg.pki, "--host", ADDR_DST, "--host", "127.0.0.1",
                        "--host", "localhost"], check=True, stdout=subprocess.DEVNULL)
    bases = {"1g": (1 << 30, 256 << 20), "8g": (8 << 30, 256 << 20)}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results_path = os.path.join(cfg.out, "results-%s.jsonl" % stamp)
    log("matrix: links=%s loads=%s disks=%s methods=%s runs=%d cap=%ss guest-seconds=%d -> %s"
        % (links, loads, disks, methods, cfg.runs, cfg.cap, cfg.seconds, results_path))
    results = []
    for disk in disks:
        size, data = bases[disk]
        base = os.path.join(work, "base-%s.raw" % disk)
        make_base(base, size, data, seed=42)
        for link in links:
            shape(link)
            for load in loads:
                for i in range(cfg.runs):
                    for m in methods:   # interleaved, so that drift hits every method alike
                        rundir = os.path.join(work, "%s-%s-%s-%s-%d" % (link, load, disk, m, i))
                        shutil.rmtree(rundir, ignore_errors=True)
                        log("run %s link=%s load=%s disk=%s #%d" % (m, link, load, disk, i + 1))
                        r = Run(cfg, m, link, load, disk, base, rundir).run()
                        r["run"] = i + 1
                        log("  -> converged=%s verified=%s total=%s s downtime=%s ms wire=%s %s"
                            % (r["converged"], r["verified"], r.get("total_s"), r.get("downtime_ms"),
                               r.get("wire_bytes"), "; ".join(r["notes"])))
                        if r.get("ferry_cpu_roles_s"):
                            log("     ferry cpu s=%s by thread role %s" % (r.get("ferry_cpu_s"), r["ferry_cpu_roles_s"]))
                        results.append(r)
                        with open(results_path, "a") as f:
                            f.write(json.dumps(r) + "\n")
                        if r["converged"] and r["verified"] and not cfg.keep:
                            shutil.rmtree(rundir, ignore_errors=True)
    _, rows = summarize(results)
    table = markdown(rows)
    with open(os.path.join(cfg.out, "table-%s.md" % stamp), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
