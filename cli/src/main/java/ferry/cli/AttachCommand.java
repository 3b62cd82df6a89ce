package ferry.cli;

import ferry.vm.AttachConfig;
import ferry.vm.Attachment;
import ferry.vm.VmConfigParser;
import java.util.List;

/**
 * {@code ferry attach --qmp PATH}: Ferry's monitor, QMP server and migration for a running QEMU that Ferry
 * did not start, until QEMU exits or Ferry is stopped (SIGTERM/SIGINT: Ferry lets go, QEMU runs on).
 * Exit status: 0 when QEMU ended or Ferry let go normally, 1 on a failure, 2 on bad options.
 */
final class AttachCommand {
    private AttachCommand() {}

    static final String HELP = """
            usage: ferry attach --qmp PATH [-name NAME]
                                [-monitor stdio|unix:PATH,server,nowait|tcp:HOST:PORT,server,nowait|none]...
                                [-qmp unix:PATH,server,nowait|tcp:HOST:PORT,server,nowait]...
                                [-chardev socket,id=ID,path=PATH,server=on,wait=off -mon chardev=ID,mode=control|readline]...
                                [-incoming tcp:HOST:PORT [--incoming-overwrite]] [--runtime-dir DIR]
            Attaches to a running QEMU through its QMP socket (QEMU started with -qmp unix:PATH,server,nowait, or the
            qmp.sock a dead ferry run left in its runtime directory) and offers the same monitor, QMP server and
            migration as ferry run: migrate -d -b tcp:DEST:PORT moves every drive with a writable medium.
            With -incoming, QEMU must have been started with -incoming defer and the VM's configuration, its images
            existing with the source's sizes. Ferry never stops that QEMU, except on quit.
            """;

    static int run(List<String> args) {
        if (args.contains("--help") || args.contains("-h")) {
            System.out.print(HELP);
            return 0;
        }
        AttachConfig config;
        try {
            config = AttachConfig.parse(args);
        } catch (VmConfigParser.BadOptionException e) {
            System.err.println("ferry attach: " + e.getMessage());
            return 2;
        }
        Attachment attachment = new Attachment(config);
        Thread hook = new Thread(() -> letGo(attachment), "ferry-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        Signals.onTermination(attachment::quitFerry);       // lets go of QEMU, exit 0: QEMU runs on
        try {
            attachment.start();
            String why = attachment.awaitExit();
            System.err.println("ferry: " + attachment.name() + ": " + why);
            return 0;
        } catch (Exception e) {
            System.err.println("ferry attach: " + e.getMessage());
            System.getLogger(AttachCommand.class.getName()).log(System.Logger.Level.DEBUG, "attach failed", e);
            return 1;
        } finally {
            letGo(attachment);
        }
    }

    private static void letGo(Attachment attachment) {
        try {
            attachment.close();
        } catch (Exception e) {
            System.err.println("ferry: letting go cleanly failed: " + e.getMessage());
        }
    }
}
