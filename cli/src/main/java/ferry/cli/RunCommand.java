package ferry.cli;

import ferry.vm.Supervisor;
import ferry.vm.VmConfig;
import ferry.vm.VmConfigParser;
import java.util.List;

/**
 * {@code ferry run}: starts and supervises one VM until it exits ({@code quit}, guest poweroff,
 * SIGTERM/SIGINT). Exit status: 0 when the VM ended normally, 1 on a failure, 2 on bad options.
 */
final class RunCommand {
    private RunCommand() {}

    static final String HELP = """
            usage: ferry run -name NAME -m MEM [-smp N] [-kernel F [-initrd F] [-append ARGS]]
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
                             [--qemu PATH] [--qemu-arg ARG]... [--runtime-dir DIR]
            Starts QEMU, which opens its -drives itself. In the monitor: migrate -d -b tcp:DEST:PORT, info migrate.
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
        Supervisor supervisor = new Supervisor(config);
        Thread hook = new Thread(() -> stop(supervisor), "ferry-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            supervisor.start();
            String why = supervisor.awaitExit();
            System.err.println("ferry: " + config.name() + ": " + why);
            return supervisor.crashed() ? 1 : 0;
        } catch (Exception e) {
            System.err.println("ferry run: " + config.name() + ": " + e.getMessage());
            System.getLogger(RunCommand.class.getName()).log(System.Logger.Level.DEBUG, "start failed", e);
            return 1;
        } finally {
            stop(supervisor);
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
