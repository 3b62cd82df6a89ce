package ferry.tls;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import javax.naming.InvalidNameException;
import javax.naming.ldap.LdapName;
import javax.naming.ldap.Rdn;

/**
 * Makes a CA and a server and a client certificate in QEMU's {@code tls-creds-x509} layout by running
 * {@code openssl} (Debian's openssl 3.0): Ferry writes no ASN.1 of its own. {@code ferry certs} is its
 * command line; the tests use it too.
 *
 * <p>What it makes, in DIR: {@code ca-cert.pem}, plus {@code ca-key.pem} when it made a new CA (with
 * {@code caDir} it signs with that CA's {@code ca-key.pem} and copies its {@code ca-cert.pem});
 * {@code server-cert.pem}/{@code server-key.pem} for the hosts (subject {@code CN=first host}, every host
 * as a DNS or IP subjectAltName, extendedKeyUsage serverAuth); {@code client-cert.pem}/{@code client-key.pem}
 * with the subject {@code clientDn} (extendedKeyUsage clientAuth). Keys are ECDSA P-256, PKCS#8, mode 0600
 * from the start. Key usages are those QEMU's sanity check asks for (CA: keyCertSign; others:
 * digitalSignature, keyEncipherment; all critical). The CA is valid for max(days, 3650) days, the host
 * certificates for {@code days} (negative: already expired, for tests). Existing files are never overwritten.
 *
 * <p>Any thread; runs openssl synchronously.
 */
public final class CertificateMaker {
    public static final int CA_MIN_DAYS = 3650;
    private static final long OPENSSL_TIMEOUT_S = 60;
    private static final Map<String, String> OPENSSL_TYPES = Map.ofEntries(
            Map.entry("CN", "CN"), Map.entry("O", "O"), Map.entry("OU", "OU"), Map.entry("L", "L"), Map.entry("ST", "ST"),
            Map.entry("C", "C"), Map.entry("DC", "DC"), Map.entry("UID", "UID"), Map.entry("STREET", "street"),
            Map.entry("SERIALNUMBER", "serialNumber"), Map.entry("EMAIL", "emailAddress"), Map.entry("E", "emailAddress"),
            Map.entry("EMAILADDRESS", "emailAddress"), Map.entry("TITLE", "title"));

    /**
     * @param hosts the destination's names, as the source will connect (its URI host or tls-hostname); DNS names or IP addresses
     * @param clientDn the client certificate's subject as QEMU prints it, most significant first, e.g.
     *     {@code O=Example,CN=src.example}: the string {@code authz-simple,identity=} then takes
     * @param caDir a directory holding {@code ca-cert.pem} and {@code ca-key.pem} to sign with; empty: make a new CA
     */
    public record Request(List<String> hosts, String clientDn, int days, Optional<Path> caDir) {
        public Request {
            hosts = List.copyOf(hosts);
            if (hosts.isEmpty()) {
                throw new IllegalArgumentException("at least one host name is needed");
            }
            if (days == 0) {
                throw new IllegalArgumentException("days must not be 0");
            }
        }
    }

    private CertificateMaker() {}

    /** Makes the files; returns them in the order made. */
    public static List<Path> make(Path dir, Request request) throws IOException, InterruptedException {
        String clientSubject = opensslSubject(request.clientDn());
        for (String host : request.hosts()) {
            if (!host.matches("[A-Za-z0-9.:*_-]+")) {
                throw new IllegalArgumentException("not a host name or IP address: '" + host + "'");
            }
        }
        Files.createDirectories(dir);
        List<String> targets = new ArrayList<>(List.of(TlsCredentials.CA_CERT, TlsCredentials.SERVER_CERT,
                TlsCredentials.SERVER_KEY, TlsCredentials.CLIENT_CERT, TlsCredentials.CLIENT_KEY));
        if (request.caDir().isEmpty()) {
            targets.add("ca-key.pem");
        }
        for (String name : targets) {
            if (Files.exists(dir.resolve(name))) {
                throw new FileAlreadyExistsException(dir.resolve(name).toString(), null, "Ferry never overwrites credentials");
            }
        }
        Path work = Files.createTempDirectory("ferry-certs");
        List<Path> made = new ArrayList<>();
        try {
            Path config = work.resolve("openssl.cnf");
            Files.writeString(config, config(request.hosts()), StandardCharsets.UTF_8);
            Path caCert = dir.resolve(TlsCredentials.CA_CERT);
            Path caKey;
            if (request.caDir().isPresent()) {
                caKey = request.caDir().get().resolve("ca-key.pem");
                Files.copy(request.caDir().get().resolve(TlsCredentials.CA_CERT), caCert);
                made.add(caCert);
            } else {
                caKey = dir.resolve("ca-key.pem");
                key(caKey);
                made.add(caKey);
                openssl("req", "-new", "-x509", "-config", config.toString(), "-extensions", "ca", "-key", caKey.toString(),
                        "-subj", "/CN=Ferry CA " + request.hosts().getFirst(), "-days", String.valueOf(Math.max(request.days(),
                                CA_MIN_DAYS)), "-sha256", "-set_serial", serial(), "-out", caCert.toString());
                made.add(caCert);
            }
            made.addAll(signed(dir, work, config, "server", "/CN=" + escape(request.hosts().getFirst()), caCert, caKey, request.days()));
            made.addAll(signed(dir, work, config, "client", clientSubject, caCert, caKey, request.days()));
            return made;
        } finally {
            try (var files = Files.list(work)) {
                for (Path file : files.toList()) {
                    Files.deleteIfExists(file);
                }
            }
            Files.deleteIfExists(work);
        }
    }

    private static List<Path> signed(Path dir, Path work, Path config, String role, String subject, Path caCert, Path caKey,
                                     int days) throws IOException, InterruptedException {
        Path key = dir.resolve(role + "-key.pem");
        Path cert = dir.resolve(role + "-cert.pem");
        Path csr = work.resolve(role + ".csr");
        key(key);
        openssl("req", "-new", "-config", config.toString(), "-key", key.toString(), "-subj", subject, "-out", csr.toString());
        openssl("x509", "-req", "-in", csr.toString(), "-CA", caCert.toString(), "-CAkey", caKey.toString(), "-set_serial", serial(),
                "-days", String.valueOf(days), "-sha256", "-extfile", config.toString(), "-extensions", role, "-out", cert.toString());
        return List.of(key, cert);
    }

    /** An ECDSA P-256 key, PKCS#8, in a file that is 0600 before any key byte is written. */
    private static void key(Path file) throws IOException, InterruptedException {
        Files.createFile(file, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file.toString());
    }

    private static String config(List<String> hosts) {
        List<String> names = new ArrayList<>();
        for (String host : hosts) {
            names.add((isIpAddress(host) ? "IP:" : "DNS:") + host);
        }
        return """
                [req]
                distinguished_name = dn
                prompt = no
                [dn]
                [ca]
                basicConstraints = critical, CA:TRUE
                keyUsage = critical, keyCertSign, cRLSign
                subjectKeyIdentifier = hash
                [server]
                basicConstraints = critical, CA:FALSE
                keyUsage = critical, digitalSignature, keyEncipherment
                extendedKeyUsage = serverAuth
                subjectAltName = %s
                subjectKeyIdentifier = hash
                authorityKeyIdentifier = keyid
                [client]
                basicConstraints = critical, CA:FALSE
                keyUsage = critical, digitalSignature, keyEncipherment
                extendedKeyUsage = clientAuth
                subjectKeyIdentifier = hash
                authorityKeyIdentifier = keyid
                """.formatted(String.join(", ", names));
    }

    static boolean isIpAddress(String host) {
        if (host.matches("[0-9.]+") || host.contains(":")) {
            try {
                InetAddress.ofLiteral(host);
                return true;
            } catch (IllegalArgumentException e) {
                return false;
            }
        }
        return false;
    }

    /**
     * A DN written as QEMU prints it, most significant RDN first ({@code O=b,CN=a}; see {@link DistinguishedName}),
     * as openssl's {@code -subj} ({@code /O=b/CN=a}), so that the subject made prints back as the same string.
     */
    static String opensslSubject(String dn) {
        LdapName name;
        try {
            name = new LdapName(dn);
        } catch (InvalidNameException e) {
            throw new IllegalArgumentException("not a distinguished name: '" + dn + "' (e.g. O=Example,CN=src.example)");
        }
        if (name.isEmpty()) {
            throw new IllegalArgumentException("empty distinguished name");
        }
        StringBuilder subject = new StringBuilder();
        List<Rdn> rdns = new ArrayList<>(name.getRdns());   // index 0 is the rightmost RDN: here the least significant
        java.util.Collections.reverse(rdns);
        for (Rdn rdn : rdns) {
            if (rdn.size() != 1) {
                throw new IllegalArgumentException("multi-valued RDN " + rdn + " in '" + dn + "' is not supported");
            }
            String type = OPENSSL_TYPES.get(rdn.getType().toUpperCase(Locale.ROOT));
            if (type == null) {
                throw new IllegalArgumentException("attribute " + rdn.getType() + " in '" + dn + "' is not supported (use "
                        + String.join(", ", new java.util.TreeSet<>(OPENSSL_TYPES.keySet())) + ")");
            }
            subject.append('/').append(type).append('=').append(escape(String.valueOf(rdn.getValue())));
        }
        return subject.toString();
    }

    /** openssl's -subj escapes: a backslash before '/', '+', '\' and ','. */
    private static String escape(String value) {
        StringBuilder out = new StringBuilder();
        for (char c : value.toCharArray()) {
            if (c == '/' || c == '+' || c == '\\' || c == ',') {
                out.append('\\');
            }
            out.append(c);
        }
        return out.toString();
    }

    private static String serial() {
        byte[] bytes = new byte[16];
        new SecureRandom().nextBytes(bytes);
        bytes[0] &= 0x7f;
        bytes[0] |= 0x01;                                   // positive and 16 bytes long
        return "0x" + HexFormat.of().formatHex(bytes);
    }

    private static void openssl(String... args) throws IOException, InterruptedException {
        List<String> command = new ArrayList<>();
        command.add("openssl");
        command.addAll(List.of(args));
        Process process;
        try {
            process = new ProcessBuilder(command).redirectErrorStream(true).start();
        } catch (IOException e) {
            throw new IOException("cannot run openssl (scripts/install-deps.sh installs it): " + e.getMessage(), e);
        }
        process.getOutputStream().close();
        byte[] output = process.getInputStream().readAllBytes();
        if (!process.waitFor(OPENSSL_TIMEOUT_S, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            throw new IOException("openssl " + args[0] + " did not finish within " + OPENSSL_TIMEOUT_S + " s");
        }
        if (process.exitValue() != 0) {
            throw new IOException("openssl " + String.join(" ", args) + " failed with status " + process.exitValue() + ": "
                    + new String(output, StandardCharsets.UTF_8).strip());
        }
    }
}
