package ferry.cli;

import ferry.vm.LogDir;
import ferry.vm.Supervisor;
import ferry.vm.VmConfig;
import ferry.vm.VmConfigParser;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

/**
 * {@code ferry run}: starts and supervises one VM until it exits ({@code quit}, guest poweroff,
 * SIGTERM/SIGINT/SIGHUP: a clean stop, as QEMU's). Exit status: 0 when the VM ended normally or on one of
 * those signals, 1 on a failure, 2 on bad options. {@code -daemonize}: the command returns 0 once the VM
 * runs, and Ferry goes on detached ({@link Daemon}); {@code -pidfile PATH}: Ferry's own pid, the one to signal.
 */
final class RunCommand {
    private RunCommand() {}

    static final String HELP = """
            usage: ferry run -name NAME -m MEM [-smp N[,sockets=S,...]] [-machine TYPE[,PROP=V...]] [-cpu MODEL]
                             [-kernel F [-initrd F] [-append ARGS]] [-device ...] [-netdev ...] [-chardev ...]
                             -drive file=PATH,format=raw|qcow2[,if=virtio][,id=ID] [-drive ...]
                             [-serial stdio|file:PATH|unix:PATH,server,nowait|none]
                             [-monitor stdio|unix:PATH,server,nowait|tcp:HOST:PORT,server,nowait|none]
                             [-qmp unix:PATH,server,nowait|tcp:HOST:PORT,server,nowait]
                             [-chardev socket,id=ID,path=PATH,server=on,wait=off -mon chardev=ID,mode=control|readline]
                             [-display none] [-accel kvm|tcg] [-incoming tcp:HOST:PORT|defer [--incoming-overwrite]]
                             [-object tls-creds-x509,id=ID,dir=DIR,endpoint=server|client[,verify-peer=on|off]]
                             [-object authz-simple,id=ID,identity=DN] [-object authz-list-file,id=ID,filename=F]
                             [-global migration.tls-creds=ID] [-global migration.tls-hostname=NAME]
                             [-global migration.tls-authz=ID] [-object OTHER,...  (passed to QEMU)]
                             [-pidfile PATH] [-daemonize] [--qemu PATH] [--qemu-arg ARG]... [--runtime-dir DIR]
                             [--log-dir DIR] [--version] [--help]
            Starts QEMU, which opens its -drives itself. -device, -netdev, -cpu, -chardev (not a -mon's) and other
            -objects go to QEMU as written; the machine type defaults to QEMU's own default, pinned to its versioned
            name (pc-i440fx-7.2 on QEMU 7.2). QEMU's log: --log-dir DIR, else /var/log/ferry (root) or
            ~/.local/state/ferry, as NAME.qemu.log. FERRY_LOG=error|warning|info|debug sets Ferry's log level. In the monitor: migrate -d -b tcp:DEST:PORT, info migrate.
            On the QMP socket: QEMU 7.2's QMP; migrate {"uri": "tcp:DEST:PORT", "blk": true}, query-migrate, events.
            TLS: migrate_set_parameter tls-creds ID on both sides (the destination before migrate_incoming);
            ferry certs DIR --host NAME makes the files. See README.md and docs/migration-protocol.md.
            """;

    static int run(List<String> args) {
        if (args.contains("--help") || args.contains("-h")) {
            System.out.print(HELP);
            return 0;
        }
        VmConfig config;
        try {
            config = VmConfigParser.parse(args);
        } catch (VmConfigParser.BadOptionException e) {
            System.err.println("ferry run: " + e.getMessage());
            return 2;
        }
        if (config.process().daemonize() && !Daemon.isChild()) {
            try {
                return Daemon.detach("run", LogDir.of(config.process().logDir()).resolve(config.name() + ".ferry.log"));
            } catch (java.io.IOException e) {
                System.err.println("ferry run: " + config.name() + ": -daemonize failed: " + e.getMessage());
                return 1;
            } catch (InterruptedException e) {
                return 1;
            }
        }
        Supervisor supervisor = new Supervisor(config);
        Thread hook = new Thread(() -> stop(supervisor), "ferry-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);        // for exits the signal handler does not see (System.exit)
        Signals.onTermination(supervisor::quit);
        Optional<Path> pidFile = config.process().pidFile();
        try {
            supervisor.start();
            if (pidFile.isPresent()) {
                Files.writeString(pidFile.get(), ProcessHandle.current().pid() + "\n");
            }
            if (Daemon.isChild()) {
                Daemon.ready();
            }
            String why = supervisor.awaitExit();
            System.err.println("ferry: " + config.name() + ": " + why);
            return supervisor.crashed() ? 1 : 0;
        } catch (Exception e) {
            System.err.println("ferry run: " + config.name() + ": " + e.getMessage());
            System.getLogger(RunCommand.class.getName()).log(System.Logger.Level.DEBUG, "start failed", e);
            return 1;
        } finally {
            stop(supervisor);
            pidFile.ifPresent(RunCommand::deleteQuietly);
        }
    }

    /** QEMU removes its -pidfile on exit too; a pid file that is already gone is no failure. */
    private static void deleteQuietly(Path file) {
        try {
            Files.deleteIfExists(file);
        } catch (java.io.IOException e) {
            System.err.println("ferry: cannot remove the pid file " + file + ": " + e.getMessage());
        }
    }

    private static void stop(Supervisor supervisor) {
        try {
            supervisor.close();
        } catch (Exception e) {
            System.err.println("ferry: stopping cleanly failed: " + e.getMessage());
        }
    }
}
