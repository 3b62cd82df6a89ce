package ferry.nbd.tls;

import ferry.testkit.Tools;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * Certificate directories in QEMU's tls-creds-x509 layout, made by openssl for the interop tests
 * (the unit tests use the committed fixtures instead). A CA (RSA) signs a server certificate for
 * localhost/127.0.0.1 and client certificates. The server key is RSA written as PKCS#1
 * ({@code RSA PRIVATE KEY}), as gnutls' certtool writes it in QEMU's documentation. Client keys are
 * ECDSA unless asked otherwise: gnutls 3.7 clients send no RSA client certificate to a TLS 1.3 JSSE
 * server (docs/nbd-protocol.md).
 */
public final class OpensslCerts {
    /** Key types, as openssl genpkey makes them. */
    public enum Key {
        RSA("-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
        EC("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        ED25519("-algorithm", "ed25519"),
        RSA_PSS("-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048");

        final String[] genpkey;

        Key(String... genpkey) {
            this.genpkey = genpkey;
        }
    }

    private final Path work;
    private final Path caKey;
    private final Path caCert;
    private int serial;

    private OpensslCerts(Path work) {
        this.work = work;
        this.caKey = work.resolve("ca-key.pem");
        this.caCert = work.resolve("ca-cert.pem");
    }

    /** A new CA (its key stays in {@code work}, which must not be a credentials directory). */
    public static OpensslCerts ca(Path work, String name) throws IOException {
        Files.createDirectories(work);
        OpensslCerts ca = new OpensslCerts(work);
        Tools.run(60, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca.caKey.toString(),
                "-out", ca.caCert.toString(), "-days", "30", "-subj", "/CN=" + name,
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign").orFail();
        return ca;
    }

    public Path caCert() {
        return caCert;
    }

    /** {@code dir} with ca-cert.pem (this CA), server-cert.pem and server-key.pem. */
    public Path serverDir(Path dir) throws IOException {
        Files.createDirectories(dir);
        Files.copy(caCert, dir.resolve("ca-cert.pem"), StandardCopyOption.REPLACE_EXISTING);
        Path pkcs8 = work.resolve("server-key-pkcs8.pem");
        issue(Key.RSA, pkcs8, dir.resolve("server-cert.pem"), "localhost", "serverAuth", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
        Tools.run(30, "openssl", "pkey", "-in", pkcs8.toString(), "-traditional", "-out", dir.resolve("server-key.pem").toString()).orFail();
        return dir;
    }

    /** {@code dir} with ca-cert.pem ({@code trusted}, the CA that signed the server) and an ECDSA client pair of this CA. */
    public Path clientDir(Path dir, Path trusted, String name) throws IOException {
        return clientDir(dir, trusted, name, Key.EC);
    }

    /** As {@link #clientDir(Path, Path, String)}, with a client key of type {@code key}. */
    public Path clientDir(Path dir, Path trusted, String name, Key key) throws IOException {
        Files.createDirectories(dir);
        Files.copy(trusted, dir.resolve("ca-cert.pem"), StandardCopyOption.REPLACE_EXISTING);
        issue(key, dir.resolve("client-key.pem"), dir.resolve("client-cert.pem"), name, "clientAuth", "");
        return dir;
    }

    private void issue(Key type, Path key, Path cert, String cn, String purpose, String more) throws IOException {
        Path csr = work.resolve("req-" + (++serial) + ".csr");
        Path ext = work.resolve("ext-" + serial + ".cnf");
        Files.writeString(ext, "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                + "extendedKeyUsage=" + purpose + "\n" + more);
        java.util.List<String> genpkey = new java.util.ArrayList<>(java.util.List.of("openssl", "genpkey"));
        genpkey.addAll(java.util.List.of(type.genpkey));
        genpkey.addAll(java.util.List.of("-out", key.toString()));
        Tools.run(60, genpkey).orFail();
        Tools.run(60, "openssl", "req", "-new", "-key", key.toString(), "-out", csr.toString(), "-subj", "/CN=" + cn).orFail();
        Tools.run(60, "openssl", "x509", "-req", "-in", csr.toString(), "-CA", caCert.toString(), "-CAkey", caKey.toString(),
                "-set_serial", Integer.toString(1000 + serial), "-days", "30", "-extfile", ext.toString(), "-out", cert.toString()).orFail();
    }
}
