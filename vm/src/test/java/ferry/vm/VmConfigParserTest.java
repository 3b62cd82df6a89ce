package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.monitor.MigrationUri;
import ferry.monitor.MonitorEndpoint;
import ferry.qemu.Accelerator;
import ferry.qemu.QemuConfig;
import ferry.tls.TlsEndpoint;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** {@code ferry run}'s options in QEMU's shapes, and every refusal with its message. */
class VmConfigParserTest {
    private static final String DRIVE = "file=/images/disk.raw,format=raw,if=virtio";

    private static VmConfig parse(String... args) throws VmConfigParser.BadOptionException {
        return VmConfigParser.parse(List.of(args));
    }

    /** The options plus one valid drive, so only the option under test can be wrong. */
    private static VmConfig withDrive(String... args) throws VmConfigParser.BadOptionException {
        List<String> all = new ArrayList<>(List.of(args));
        all.addAll(List.of("-drive", DRIVE));
        return VmConfigParser.parse(all);
    }

    private static String refusal(String... args) {
        return assertThrows(VmConfigParser.BadOptionException.class, () -> VmConfigParser.parse(List.of(args))).getMessage();
    }

    private static String refusalWithDrive(String... args) {
        return assertThrows(VmConfigParser.BadOptionException.class, () -> withDrive(args)).getMessage();
    }

    // ---- accepted shapes --------------------------------------------------------------------

    @Test
    void shouldDefaultEverythingButTheDrive() throws Exception {
        VmConfig config = parse("-drive", DRIVE);
        assertEquals("ferry-vm", config.name());
        assertEquals(256, config.memoryMib());
        assertEquals(1, config.smp());
        assertEquals(Optional.empty(), config.kernel());
        assertEquals(Optional.empty(), config.initrd());
        assertEquals(Optional.empty(), config.append());
        assertInstanceOf(QemuConfig.Serial.None.class, config.serial());
        assertEquals(List.of(), config.monitors());
        assertEquals(Optional.empty(), config.accelerator());
        assertEquals(Optional.empty(), config.incoming());
        assertFalse(config.incomingOverwrite());
        assertEquals("qemu-system-x86_64", config.qemuBinary());
        assertEquals(List.of(), config.qemuArgs());
        assertEquals(Optional.empty(), config.runtimeDir());
    }

    @Test
    void shouldReadNameInBothShapes() throws Exception {
        assertEquals("web1", withDrive("-name", "web1").name());
        assertEquals("web2", withDrive("-name", "guest=web2").name());
    }

    @ParameterizedTest
    @CsvSource({"256, 256", "256M, 256", "256m, 256", "1G, 1024", "2g, 2048", "size=512M, 512", "16, 16",
            "1.5G, 1536", "2T, 2097152", "512M, 512", "0.5g, 512", "16384K, 16", "268435456B, 256", "1.25G, 1280", ".5G, 512",
            "1P, 1073741824"})
    void shouldReadMemoryAsQemuDoes(String spec, int mib) throws Exception {
        assertEquals(mib, withDrive("-m", spec).memoryMib());
    }

    @Test
    void shouldReadSmpInItsShapes() throws Exception {
        assertEquals(2, withDrive("-smp", "2").smp());
        assertEquals(4, withDrive("-smp", "cpus=4").smp());
        assertEquals(2, withDrive("-smp", "2,sockets=1").smp());
    }

    @Test
    void shouldReadKernelInitrdAndAppend() throws Exception {
        VmConfig config = withDrive("-kernel", "/boot/vmlinuz", "-initrd", "/boot/initrd.gz", "-append", "console=ttyS0 quiet");
        assertEquals(Optional.of(Path.of("/boot/vmlinuz")), config.kernel());
        assertEquals(Optional.of(Path.of("/boot/initrd.gz")), config.initrd());
        assertEquals(Optional.of("console=ttyS0 quiet"), config.append());
    }

    private static List<QemuConfig.DriveProperty> props(String... keyValues) {
        List<QemuConfig.DriveProperty> out = new ArrayList<>();
        for (int i = 0; i < keyValues.length; i += 2) {
            out.add(new QemuConfig.DriveProperty(keyValues[i], keyValues[i + 1]));
        }
        return out;
    }

    private static VmConfig.Drive onlyDrive(String spec) throws VmConfigParser.BadOptionException {
        return parse("-drive", spec).drives().getFirst();
    }

    @Test
    void shouldReadDriveWithFormatInterfaceAndId() throws Exception {
        VmConfig config = parse("-drive", "file=/a.raw,format=raw,if=virtio,id=root");
        assertEquals(List.of(new VmConfig.Drive(Path.of("/a.raw"), "raw", "root")), config.drives());
        assertEquals(List.of(new VmConfig.Drive(Path.of("/b.qcow2"), "qcow2", "disk0")),
                parse("-drive", "/b.qcow2,format=qcow2").drives(), "a bare first value is the file; if= is optional");
        VmConfig.Drive drive = config.drives().getFirst();
        assertEquals(Path.of("/a.raw"), drive.file());
        assertEquals("raw", drive.format());
        assertEquals("root", drive.id());
        assertEquals(Optional.empty(), drive.nodeName());
        assertFalse(drive.readOnly());
        assertEquals("root-fmt", drive.qemuDisk().nodeName());
    }

    @Test
    void shouldKeepEveryDrivePropertyInTheUsersOrder() throws Exception {
        String spec = "cache=none,file=/img/root.qcow2,aio=native,format=qcow2,discard=unmap,detect-zeroes=unmap,werror=stop,"
                + "rerror=report,if=virtio,index=1,media=disk,throttling.bps-total=10485760,bps_wr=1048576,iops=500,"
                + "snapshot=off,node-name=root-node,id=root,copy-on-read=off";
        VmConfig.Drive drive = onlyDrive(spec);
        assertEquals(props("cache", "none", "file", "/img/root.qcow2", "aio", "native", "format", "qcow2", "discard", "unmap",
                "detect-zeroes", "unmap", "werror", "stop", "rerror", "report", "if", "virtio", "index", "1", "media", "disk",
                "throttling.bps-total", "10485760", "bps_wr", "1048576", "iops", "500", "snapshot", "off",
                "node-name", "root-node", "id", "root", "copy-on-read", "off"), drive.properties());
        assertEquals(Optional.of("root-node"), drive.nodeName());
        assertEquals(spec, drive.qemuDisk().commandLineValue(), "QEMU gets the drive exactly as written");
    }

    @Test
    void shouldUnescapeDoubledCommasAndEscapeThemAgainForQemu() throws Exception {
        VmConfig.Drive drive = onlyDrive("file=/img/a,,b,,,,c.raw,format=raw,id=d");
        assertEquals(Path.of("/img/a,b,,c.raw"), drive.file());
        assertEquals("file=/img/a,,b,,,,c.raw,format=raw,id=d,if=virtio,node-name=d-fmt", drive.qemuDisk().commandLineValue());
        assertEquals(Path.of("/img/x,y.qcow2"), onlyDrive("/img/x,,y.qcow2,format=qcow2").file(), "in a bare first value too");
        assertEquals("gu,est", withDrive("-name", "gu,,est").name(), "-name reads escapes the same way");
    }

    @Test
    void shouldDefaultInterfaceToVirtioAndIdToDiskNAtTheEnd() throws Exception {
        assertEquals(props("file", "/c.raw", "format", "raw", "cache", "none", "aio", "native", "if", "virtio", "id", "disk0"),
                onlyDrive("file=/c.raw,format=raw,cache=none,aio=native").properties(), "as before: virtio, disk<index>");
        assertEquals(props("file", "/c.raw", "format", "raw", "if", "ide", "id", "disk0"), onlyDrive("file=/c.raw,format=raw,if=ide").properties(),
                "any interface QEMU has: QEMU migrates its device state");
        assertEquals(props("file", "/c.raw", "if", "none", "format", "raw", "id", "disk0"), onlyDrive("file=/c.raw,if=none,format=raw").properties());
    }

    @Test
    void shouldReadShortBooleansAsQemuDoesAndReadOnly() throws Exception {
        VmConfig.Drive drive = onlyDrive("file=/r.raw,format=raw,readonly,nosnapshot");
        assertEquals(props("file", "/r.raw", "format", "raw", "readonly", "on", "snapshot", "off", "if", "virtio", "id", "disk0"),
                drive.properties());
        assertTrue(drive.readOnly());
        assertTrue(onlyDrive("file=/r.raw,format=raw,readonly=yes").readOnly());
        assertFalse(onlyDrive("file=/r.raw,format=raw,readonly=off").readOnly());
    }

    @Test
    void shouldNumberRepeatedDrivesInOrder() throws Exception {
        VmConfig config = parse("-drive", "file=/a.raw,format=raw", "-drive", "file=/b.qcow2,format=qcow2,if=virtio",
                "-drive", "file=/c.raw,format=raw,id=data");
        assertEquals(List.of(new VmConfig.Drive(Path.of("/a.raw"), "raw", "disk0"),
                new VmConfig.Drive(Path.of("/b.qcow2"), "qcow2", "disk1"),
                new VmConfig.Drive(props("file", "/c.raw", "format", "raw", "id", "data", "if", "virtio"))), config.drives(),
                "a given id stays where the user wrote it; the default if= comes after it");
    }

    @Test
    void shouldReadEverySerialShape() throws Exception {
        assertEquals(new QemuConfig.Serial.Stdio(), withDrive("-serial", "stdio").serial());
        assertEquals(new QemuConfig.Serial.File(Path.of("/tmp/serial.log")), withDrive("-serial", "file:/tmp/serial.log").serial());
        assertEquals(new QemuConfig.Serial.Unix(Path.of("/tmp/serial.sock")),
                withDrive("-serial", "unix:/tmp/serial.sock,server,nowait").serial());
        assertEquals(new QemuConfig.Serial.Unix(Path.of("/tmp/s2.sock")),
                withDrive("-serial", "unix:/tmp/s2.sock,server=on,wait=off").serial());
        assertEquals(new QemuConfig.Serial.None(), withDrive("-serial", "none").serial());
    }

    @Test
    void shouldReadEveryMonitorShape() throws Exception {
        assertInstanceOf(MonitorEndpoint.Stdio.class, withDrive("-monitor", "stdio").monitors().getFirst());
        assertEquals(List.of(new MonitorEndpoint.Unix(Path.of("/tmp/mon.sock"))),
                withDrive("-monitor", "unix:/tmp/mon.sock,server,nowait").monitors());
        assertEquals(List.of(new MonitorEndpoint.Tcp("127.0.0.1", 5555)), withDrive("-monitor", "tcp:127.0.0.1:5555,server,nowait").monitors());
        assertEquals(List.of(new MonitorEndpoint.Tcp("127.0.0.1", 5556)), withDrive("-monitor", "tcp::5556,server,nowait").monitors(),
                "an empty host is loopback, never every interface");
        assertEquals(List.of(), withDrive("-monitor", "none").monitors());
        assertEquals(List.of(new MonitorEndpoint.Unix(Path.of("/tmp/a.sock")), new MonitorEndpoint.Tcp("127.0.0.1", 5557)),
                withDrive("-monitor", "unix:/tmp/a.sock,server,nowait", "-monitor", "tcp:127.0.0.1:5557").monitors(),
                "several monitors, as QEMU allows");
    }

    @Test
    void shouldAcceptDisplayNoneAndBothAccelerators() throws Exception {
        assertEquals(Optional.empty(), withDrive("-display", "none").accelerator());
        assertEquals(Optional.of(Accelerator.KVM), withDrive("-accel", "kvm").accelerator());
        assertEquals(Optional.of(Accelerator.TCG), withDrive("-accel", "tcg").accelerator());
        assertEquals(Optional.of(Accelerator.TCG), withDrive("-accel", "tcg,thread=single").accelerator());
        assertEquals(Optional.of(Accelerator.KVM), withDrive("-enable-kvm").accelerator());
    }

    @Test
    void shouldReadIncomingInBothUriShapesWithHostZeroAsAnyAddress() throws Exception {
        assertEquals(Optional.of(listen("0.0.0.0", 4444)), withDrive("-incoming", "tcp:0:4444").incoming());
        assertEquals(Optional.of(listen("0.0.0.0", 4444)), withDrive("-incoming", "tcp://0:4444").incoming());
        assertEquals(Optional.of(listen("127.0.0.1", 4445)), withDrive("-incoming", "tcp:127.0.0.1:4445").incoming());
        assertEquals(Optional.of(new VmConfig.Incoming.Defer()), withDrive("-incoming", "defer").incoming(), "QEMU's -incoming defer");
        VmConfig overwrite = withDrive("-incoming", "tcp:0:4444", "--incoming-overwrite");
        assertTrue(overwrite.incomingOverwrite());
    }

    @Test
    void shouldReadFerryOwnOptions() throws Exception {
        VmConfig config = withDrive("--qemu", "/opt/qemu/bin/qemu-system-x86_64", "--qemu-arg", "-no-reboot",
                "--qemu-arg", "-rtc", "--qemu-arg", "base=utc", "--runtime-dir", "/run/ferry");
        assertEquals("/opt/qemu/bin/qemu-system-x86_64", config.qemuBinary());
        assertEquals(List.of("-no-reboot", "-rtc", "base=utc"), config.qemuArgs());
        assertEquals(Optional.of(Path.of("/run/ferry")), config.runtimeDir());
    }

    @Test
    void shouldTakeQemuOptionsWithTwoDashesToo() throws Exception {
        VmConfig config = parse("--name", "dashes", "--m", "1G", "--drive", DRIVE);
        assertEquals("dashes", config.name());
        assertEquals(1024, config.memoryMib());
    }

    // ---- refusals ----------------------------------------------------------------------------

    @Test
    void shouldRefuseUnknownOptionAndPointAtQemuArg() {
        String message = refusalWithDrive("-vga", "std");
        assertTrue(message.startsWith("unknown option -vga "), message);
        assertTrue(message.contains("--qemu-arg"), message);
        assertTrue(refusalWithDrive("--frobnicate").startsWith("unknown option --frobnicate "));
    }

    @ParameterizedTest
    @CsvSource({"-name", "-m", "-smp", "-kernel", "-initrd", "-append", "-drive", "-serial", "-monitor", "-display", "-accel",
            "-incoming", "--qemu", "--qemu-arg", "--runtime-dir", "-machine", "-device", "-netdev", "-cpu", "-pidfile", "--log-dir"})
    void shouldRefuseOptionWithoutValue(String option) {
        assertEquals(option + " needs a value", refusal("-drive", DRIVE, option));
    }

    @Test
    void shouldRefuseNoDrive() {
        assertEquals("no -drive given: Ferry moves VMs with their disks (give at least one -drive file=PATH,format=raw,if=virtio)",
                refusal("-name", "x", "-m", "256"));
        assertEquals(refusal(), refusal("-name", "x", "-m", "256"), "an empty command line is refused the same way");
    }

    @Test
    void shouldRefuseDriveWithoutFileOrFormat() {
        assertEquals("-drive file=x: format= is required (raw or qcow2): Ferry never guesses formats", refusal("-drive", "file=x"));
        assertEquals("-drive format=raw: file= is required", refusal("-drive", "format=raw"));
    }

    @Test
    void shouldRefuseUnsupportedFormatAndBadIdsOrBooleans() {
        assertEquals("-drive file=x,format=vmdk: format=vmdk is not supported (raw, qcow2)", refusal("-drive", "file=x,format=vmdk"));
        assertEquals("-drive file=x,format=raw,id=0bad: id=0bad must start with a letter (letters, digits, . _ -)",
                refusal("-drive", "file=x,format=raw,id=0bad"));
        assertEquals("-drive file=x,format=raw,format=qcow2: format given twice", refusal("-drive", "file=x,format=raw,format=qcow2"));
        assertEquals("-drive file=x,format=raw,readonly=maybe: readonly=maybe is not a boolean (on, off)",
                refusal("-drive", "file=x,format=raw,readonly=maybe"));
        assertEquals("-drive file=x,format=raw,=y: expected KEY=VALUE, got an empty key", refusal("-drive", "file=x,format=raw,=y"));
        assertEquals("-drive file=,format=raw: file= is required", refusal("-drive", "file=,format=raw"));
    }

    @Test
    void shouldRefuseSnapshotOnBecauseNothingWouldBeLeftToMigrate() {
        String expected = ": snapshot=on is not supported: the guest's writes would go to a temporary overlay that is deleted"
                + " on exit, so there would be nothing to migrate";
        assertEquals("-drive file=x,format=raw,snapshot=on" + expected, refusal("-drive", "file=x,format=raw,snapshot=on"));
        assertEquals("-drive file=x,format=raw,snapshot" + expected, refusal("-drive", "file=x,format=raw,snapshot"));
    }

    @Test
    void shouldRefuseAProtocolInsteadOfALocalFile() throws Exception {
        assertEquals("-drive file=nbd:unix:/s.sock,format=raw: file=nbd:unix:/s.sock names a QEMU protocol, not a local image"
                        + " file (Ferry migrates local images; write ./nbd:unix:/s.sock for a file whose name has a colon)",
                refusal("-drive", "file=nbd:unix:/s.sock,format=raw"));
        assertEquals(Path.of("./a:b.raw"), onlyDrive("file=./a:b.raw,format=raw").file());
        assertEquals(Path.of("/srv/a:b.raw"), onlyDrive("file=/srv/a:b.raw,format=raw").file());
    }

    @Test
    void shouldRefuseNodeNamesQemuWouldRefuse() {
        String longId = "abcdefghijklmnopqrstuvwxyz12";                     // 28 + "-fmt" = 32 characters
        assertEquals("-drive file=x,format=raw,id=" + longId + ": id=" + longId + " is too long to name the format node "
                        + longId + "-fmt (at most 31 characters): give a shorter id= or a node-name=",
                refusal("-drive", "file=x,format=raw,id=" + longId));
        assertEquals("-drive file=x,format=raw,node-name=1n: node-name=1n must start with a letter (letters, digits, . _ -)"
                + " and have at most 31 characters", refusal("-drive", "file=x,format=raw,node-name=1n"));
        assertEquals("-drive id=d: node-name=d equals the drive's id (drive ids and node names share one namespace in QEMU)",
                refusal("-drive", "file=x,format=raw,id=d,node-name=d"));
        assertEquals("-drive id=disk1: the name disk0 is already taken by drive disk0 (drive ids and node names share one"
                + " namespace in QEMU)", refusal("-drive", "file=x,format=raw", "-drive", "file=y,format=raw,node-name=disk0"));
        assertEquals("-drive id=a: the name a is already taken by drive a (drive ids and node names share one namespace in QEMU)",
                refusal("-drive", "file=x,format=raw,id=a", "-drive", "file=y,format=raw,id=a"));
    }

    @Test
    void shouldRefuseInitrdOrAppendWithoutKernel() {
        assertEquals("-initrd needs -kernel", refusalWithDrive("-initrd", "/boot/initrd.gz"));
        assertEquals("-append needs -kernel", refusalWithDrive("-append", "console=ttyS0"));
    }

    @Test
    void shouldRefuseSerialAndMonitorBothOnStdio() {
        String expected = "-serial stdio and -monitor stdio cannot share standard input; move one to unix: or tcp:";
        assertEquals(expected, refusalWithDrive("-serial", "stdio", "-monitor", "stdio"));
        assertEquals(expected, refusalWithDrive("-monitor", "stdio", "-nographic"), "-nographic puts the serial on stdio");
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "abc | -m abc: not a size (e.g. 256, 256M, 1.5G, 2T)",
            "G | -m G: not a size (e.g. 256, 256M, 1.5G, 2T)",
            "-5 | -m -5: not a size (e.g. 256, 256M, 1.5G, 2T)",
            "1.5X | -m 1.5X: not a size (e.g. 256, 256M, 1.5G, 2T)",
            "1.5B | -m 1.5B: a fraction needs a unit of K or more (as in QEMU)",
            "1.3G | -m 1.3G: not a whole number of MiB",
            "256K | -m 256K: not a whole number of MiB",
            "8 | -m 8: memory must be 16M..1P",
            "2P | -m 2P: memory must be 16M..1P",
            "18014398509481985G | -m 18014398509481985G: memory must be 16M..1P"})   // (2^54 + 1) GiB wraps to 1 GiB in a long
    void shouldRefuseBadMemory(String spec, String message) {
        assertEquals(message, refusalWithDrive("-m", spec));
    }

    @Test
    void shouldRefuseBadSmp() {
        assertEquals("-smp two: not a number of vCPUs", refusalWithDrive("-smp", "two"));
        assertEquals("-smp 0: 1..288 vCPUs", refusalWithDrive("-smp", "0"));
    }

    @Test
    void shouldRefuseBadSerialMonitorDisplayAccelAndIncoming() {
        assertEquals("-serial pty: use stdio, file:PATH, unix:PATH,server,nowait or none", refusalWithDrive("-serial", "pty"));
        assertEquals("-serial unix:/s.sock,wait: unsupported flag wait (Ferry always listens and never waits: server,nowait)",
                refusalWithDrive("-serial", "unix:/s.sock,wait"));
        assertEquals("-monitor vc: use stdio, unix:PATH,server,nowait, tcp:HOST:PORT,server,nowait or none",
                refusalWithDrive("-monitor", "vc"));
        assertEquals("-monitor tcp:5555: use tcp:HOST:PORT,server,nowait", refusalWithDrive("-monitor", "tcp:5555"));
        assertEquals("-monitor tcp:localhost:http: bad port", refusalWithDrive("-monitor", "tcp:localhost:http"));
        assertEquals("-monitor unix:,server: empty path", refusalWithDrive("-monitor", "unix:,server"));
        assertTrue(refusalWithDrive("-display", "gtk").startsWith("-display gtk: only '-display none' is supported"));
        assertEquals("-accel hvf: use kvm or tcg", refusalWithDrive("-accel", "hvf"));
        String incoming = refusalWithDrive("-incoming", "exec:cat");
        assertTrue(incoming.startsWith("-incoming exec:cat: ") && incoming.endsWith("(use tcp:HOST:PORT, e.g. tcp:0:4444, or defer)"), incoming);
        assertTrue(refusalWithDrive("-incoming", "tcp:0").startsWith("-incoming tcp:0: "));
    }

    @Test
    void shouldRefuseEmptyName() {
        assertEquals("-name guest=: empty name", refusalWithDrive("-name", "guest="));
    }

    private static VmConfig.Incoming listen(String host, int port) {
        return new VmConfig.Incoming.Listen(new MigrationUri(host, port));
    }

    // ---- -object and -global migration.* (TLS) -----------------------------------------------

    @Test
    void shouldReadTlsCredentialsWithQemusDefaults() throws Exception {
        VmConfig config = withDrive("-object", "tls-creds-x509,id=tls0,dir=/etc/pki/qemu,endpoint=server",
                "-object", "tls-creds-x509,id=tls1,dir=/etc/pki/c,verify-peer=off,sanity-check=no");
        assertEquals(List.of(new VmObject.TlsCredsX509("tls0", Path.of("/etc/pki/qemu"), TlsEndpoint.SERVER, true, true),
                new VmObject.TlsCredsX509("tls1", Path.of("/etc/pki/c"), TlsEndpoint.CLIENT, false, false)), config.objects());
        assertEquals(List.of(), config.qemuObjectArgs(), "TLS objects are Ferry's, not QEMU's");
        assertEquals(List.of(new VmObject.TlsCredsX509("t", Path.of("/d"), TlsEndpoint.CLIENT, true, true)),
                withDrive("--object", "tls-creds-x509,id=t,dir=/d,verify-peer").objects(), "--object and a bare flag, as QEMU");
    }

    @Test
    void shouldReadAuthzObjectsWithQemusCommaEscape() throws Exception {
        VmConfig config = withDrive("-object", "authz-simple,id=auth0,identity=C=GB,,O=Example\\,, Inc.,,CN=src.example",
                "-object", "authz-list-file,id=auth1,filename=/etc/ferry/acl.json,refresh=off",
                "-object", "authz-list-file,id=auth2,filename=acl.json");
        assertEquals(new VmObject.AuthzSimple("auth0", "C=GB,O=Example\\, Inc.,CN=src.example"), config.objects().get(0));
        assertEquals(new VmObject.AuthzListFile("auth1", Path.of("/etc/ferry/acl.json"), false), config.objects().get(1));
        assertEquals(new VmObject.AuthzListFile("auth2", Path.of("acl.json").toAbsolutePath(), true), config.objects().get(2));
    }

    @Test
    void shouldPassOtherObjectsToQemuAsWritten() throws Exception {
        VmConfig config = withDrive("-object", "rng-random,id=rng0,filename=/dev/urandom", "-object", "iothread,id=io0");
        assertEquals(List.of(new VmObject.Qemu("rng-random", "rng0", "rng-random,id=rng0,filename=/dev/urandom"),
                new VmObject.Qemu("iothread", "io0", "iothread,id=io0")), config.objects());
        assertEquals(List.of("-object", "rng-random,id=rng0,filename=/dev/urandom", "-object", "iothread,id=io0"), config.qemuObjectArgs());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '#', value = {
            "tls-creds-x509,id=t#-object tls-creds-x509,id=t: dir= is required (the directory holding ca-cert.pem ...)",
            "tls-creds-x509,id=t,dir=/d,endpoint=peer#-object tls-creds-x509,id=t: endpoint=peer: expected server or client",
            "tls-creds-x509,id=t,dir=/d,verify-peer=maybe#-object tls-creds-x509,id=t: verify-peer=maybe is not a boolean (on, off)",
            "tls-creds-x509,id=t,dir=/d,priority=NORMAL#-object tls-creds-x509,id=t: priority= is a GnuTLS priority string; Ferry"
                    + " always uses TLS 1.3 with JSSE's default suites",
            "tls-creds-x509,id=t,dir=/d,passwordid=sec0#-object tls-creds-x509,id=t: passwordid= (an encrypted key) is not supported:"
                    + " give an unencrypted key file readable only by this user",
            "tls-creds-x509,id=t,dir=/d,verify=on#-object tls-creds-x509,id=t: unknown property verify",
            "tls-creds-psk,id=t,dir=/d#-object tls-creds-psk,id=t: Ferry's migration stream authenticates with certificates only: use"
                    + " tls-creds-x509",
            "authz-pam,id=a,service=x#-object authz-pam,id=a: not supported; use authz-simple or authz-list-file",
            "authz-simple,id=a#-object authz-simple,id=a: identity= is required (the client certificate's DN,"
                    + " most significant part first, e.g. identity=O=Example,,CN=src.example: a comma in a value is written ,,)",
            "authz-list-file,id=a#-object authz-list-file,id=a: filename= is required (QEMU's JSON rule file)",
            "tls-creds-x509,dir=/d#-object tls-creds-x509,dir=/d: id= is required and must start with a letter (letters, digits, - . _)",
    })
    void shouldRefuseWrongTlsObjects(String spec, String message) {
        assertEquals(message, refusalWithDrive("-object", spec));
    }

    @Test
    void shouldTakeTheTlsParametersFromGlobalMigrationProperties() throws Exception {
        VmConfig config = withDrive("-object", "tls-creds-x509,id=tls0,dir=/d,endpoint=server", "-object", "authz-simple,id=a0,identity=CN=x",
                "-incoming", "tcp:0:4444", "-global", "migration.tls-creds=tls0", "-global", "migration.tls-authz=a0",
                "-global", "migration.tls-hostname=dst.example");
        assertEquals("tls0", config.migrationParameters().tlsCreds());
        assertEquals("a0", config.migrationParameters().tlsAuthz());
        assertEquals("dst.example", config.migrationParameters().tlsHostname());
        assertEquals("", withDrive().migrationParameters().tlsCreds(), "no TLS unless asked");
        assertEquals("-global migration.tls-creds=tls9: No TLS credentials with id 'tls9' (give -object tls-creds-x509,id=tls9,...)",
                refusalWithDrive("-global", "migration.tls-creds=tls9"));
        assertEquals("-global migration.tls-authz=a0: No authorization object with id 'a0' (give -object authz-simple,id=a0,identity=DN)",
                refusalWithDrive("-object", "tls-creds-x509,id=a0,dir=/d", "-global", "migration.tls-authz=a0"));
        assertTrue(refusalWithDrive("-global", "migration.max-bandwidth=1G").startsWith("-global migration.max-bandwidth=1G: unsupported"
                + " migration property max-bandwidth"));
        assertTrue(refusalWithDrive("-global", "virtio-blk-pci.x=1").contains("pass device properties to QEMU with --qemu-arg"));
        assertTrue(refusalWithDrive("-object", "iothread,id=x", "-object", "authz-simple,id=x,identity=CN=a")
                .contains("ids of -objects must be unique"));
    }

    // ---- QMP and control sockets, -incoming defer -----------------------------------------------

    @Test
    void shouldTakeQmpSocketsInEveryShapeQemuTakes() throws Exception {
        VmConfig config = withDrive("-qmp", "unix:/run/vm1.qmp,server,nowait", "-qmp", "tcp:127.0.0.1:4445,server=on,wait=off",
                "-chardev", "socket,id=q2,path=/run/vm1-2.qmp,server=on,wait=off", "-mon", "chardev=q2,mode=control",
                "-chardev", "socket,id=m0,host=127.0.0.1,port=4446,server,nowait", "-mon", "chardev=m0");
        assertEquals(List.of(new ferry.qmp.QmpEndpoint.Unix(Path.of("/run/vm1.qmp")), new ferry.qmp.QmpEndpoint.Tcp("127.0.0.1", 4445),
                new ferry.qmp.QmpEndpoint.Unix(Path.of("/run/vm1-2.qmp"))), config.qmpServers());
        assertEquals(List.of(new MonitorEndpoint.Tcp("127.0.0.1", 4446)), config.monitors(), "-mon's default mode is readline: HMP");
    }

    @Test
    void shouldRefuseControlSocketsFerryCannotServe() {
        assertEquals("-qmp unix:/q,server,wait: unsupported flag wait (Ferry always listens and never waits: server,nowait)",
                refusalWithDrive("-qmp", "unix:/q,server,wait"));
        assertEquals("-mon chardev=nope: no -chardev with id=nope", refusalWithDrive("-mon", "chardev=nope,mode=control"));
        assertEquals("-chardev socket,id=q,path=/q: Ferry listens and never waits: give server=on,wait=off",
                refusalWithDrive("-chardev", "socket,id=q,path=/q", "-mon", "chardev=q,mode=control"));
        assertEquals("-mon chardev=q,mode=control,pretty=on: pretty= is not supported (Ferry takes chardev= and mode=)",
                refusalWithDrive("-chardev", "socket,id=q,path=/q,server=on,wait=off", "-mon", "chardev=q,mode=control,pretty=on"));
    }

    @Test
    void shouldTakeIncomingDefer() throws Exception {
        VmConfig config = withDrive("-incoming", "defer");
        assertTrue(config.isIncoming());
        assertEquals(Optional.of(new VmConfig.Incoming.Defer()), config.incoming());
        assertFalse(withDrive().isIncoming());
    }

    @Test
    void shouldParseAttachOptions() throws Exception {
        AttachConfig config = AttachConfig.parse(List.of("--qmp", "/run/vm1.qmp", "-monitor", "unix:/run/vm1.mon,server,nowait",
                "-qmp", "unix:/run/ferry-vm1.qmp,server,nowait", "-incoming", "tcp:0:4444"));
        assertEquals(Path.of("/run/vm1.qmp"), config.qmpSocket());
        assertEquals(List.of(new MonitorEndpoint.Unix(Path.of("/run/vm1.mon"))), config.monitors());
        assertEquals(List.of(new ferry.qmp.QmpEndpoint.Unix(Path.of("/run/ferry-vm1.qmp"))), config.qmpServers());
        assertEquals(Optional.of(new MigrationUri("0.0.0.0", 4444)), config.incoming());
        assertEquals("--qmp PATH is required: the QMP socket of the running QEMU (started with -qmp unix:PATH,server,nowait)",
                assertThrows(VmConfigParser.BadOptionException.class, () -> AttachConfig.parse(List.of("-name", "x"))).getMessage());
    }

    // ---- QEMU's own options, passed through -------------------------------------------------------

    @Test
    void shouldPassQemusOwnOptionsThroughAsWrittenAndInOrder() throws Exception {
        VmConfig config = withDrive("-cpu", "qemu64,+ssse3", "-netdev", "user,id=n0,hostfwd=tcp::2222-:22",
                "-device", "virtio-net-pci,netdev=n0,id=nic0", "-chardev", "file,id=log0,path=/tmp/a,,b.log",
                "-device", "isa-serial,chardev=log0", "-chardev", "socket,id=q,path=/q,server=on,wait=off",
                "-mon", "chardev=q,mode=control");
        assertEquals(List.of("-chardev", "file,id=log0,path=/tmp/a,,b.log", "-cpu", "qemu64,+ssse3",
                "-netdev", "user,id=n0,hostfwd=tcp::2222-:22", "-device", "virtio-net-pci,netdev=n0,id=nic0",
                "-device", "isa-serial,chardev=log0"), config.qemuArgs(),
                "a -chardev no -mon names is QEMU's, ahead of the devices; the monitor's stays Ferry's");
        assertEquals(List.of(new ferry.qmp.QmpEndpoint.Unix(Path.of("/q"))), config.qmpServers());
        assertEquals(List.of("-device", "e1000"), withDrive("--device", "e1000").qemuArgs(), "QEMU's --long form too");
    }

    @Test
    void shouldKeepMachineSmpPidfileDaemonizeAndLogDir() throws Exception {
        VmConfig config = withDrive("-machine", "q35,smm=off", "-smp", "4,sockets=2,cores=2", "-pidfile", "/run/vm1.pid",
                "-daemonize", "--log-dir", "/var/log/ferry", "-monitor", "unix:/run/m,server,nowait");
        assertEquals(new VmConfig.Process(Optional.of("q35,smm=off"), Optional.of("4,sockets=2,cores=2"),
                Optional.of(Path.of("/run/vm1.pid")), true, Optional.of(Path.of("/var/log/ferry")), Optional.empty()),
                config.process());
        assertEquals(Optional.of(new java.net.InetSocketAddress("127.0.0.1", 9464)), withDrive("--metrics", "9464").process().metrics(),
                "loopback unless told otherwise");
        assertEquals(4, config.smp());
        assertEquals(VmConfig.Process.defaults(), withDrive().process());
        assertEquals("-machine accel=kvm: give a machine type first (e.g. pc, q35, pc-i440fx-7.2)",
                refusalWithDrive("-machine", "accel=kvm"));
        assertEquals("-daemonize cannot be used with a -serial or -monitor on stdio (as in QEMU)",
                refusalWithDrive("-daemonize", "-monitor", "stdio"));
    }
}
