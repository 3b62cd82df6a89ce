package ferry.cli;

import ferry.tls.CertificateMaker;
import ferry.tls.DistinguishedName;
import ferry.tls.PemFiles;
import ferry.tls.TlsCredentials;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * {@code ferry certs DIR --host NAME}: a CA and server and client certificates in QEMU's
 * {@code tls-creds-x509} layout, made by openssl ({@link CertificateMaker}). Exit status 0, 1 on a
 * failure, 2 on bad options.
 */
final class CertsCommand {
    static final int DEFAULT_DAYS = 365;

    static final String HELP = """
            usage: ferry certs DIR --host NAME [--host NAME]... [--client-dn DN] [--days N] [--ca CADIR]
            Makes, with openssl, the files of -object tls-creds-x509,dir=DIR in QEMU's layout:
              ca-cert.pem (+ ca-key.pem when it makes a new CA), server-cert.pem, server-key.pem,
              client-cert.pem, client-key.pem (ECDSA P-256 keys, mode 0600).
              --host NAME     a name the source will use for this host (migrate URI host or tls-hostname);
                              repeat for more (DNS names or IP addresses); the first is the subject CN
              --client-dn DN  subject of the client certificate, most significant part first, as QEMU
                              prints it (e.g. C=GB,O=Example,CN=a.example); default CN=<first host>.
                              authz-simple,identity= takes the same string
              --days N        validity of the server and client certificates (default 365; a new CA: 10 years)
              --ca CADIR      sign with CADIR/ca-key.pem and CADIR/ca-cert.pem instead of making a new CA
            Two hosts:  ferry certs pki/a --host a.example   then   ferry certs pki/b --host b.example --ca pki/a
            Keep ca-key.pem off the migration hosts if you can: whoever reads it can mint certificates.
            """;

    private CertsCommand() {}

    static int run(List<String> args, PrintStream out, PrintStream err) {
        if (args.contains("--help") || args.contains("-h")) {
            out.print(HELP);
            return 0;
        }
        Path dir = null;
        List<String> hosts = new ArrayList<>();
        String clientDn = null;
        int days = DEFAULT_DAYS;
        Optional<Path> ca = Optional.empty();
        try {
            for (int i = 0; i < args.size(); i++) {
                String arg = args.get(i);
                switch (arg) {
                    case "--host" -> hosts.add(value(args, ++i, arg));
                    case "--client-dn" -> clientDn = value(args, ++i, arg);
                    case "--days" -> days = days(value(args, ++i, arg));
                    case "--ca" -> ca = Optional.of(Path.of(value(args, ++i, arg)));
                    default -> {
                        if (arg.startsWith("-") || dir != null) {
                            throw new IllegalArgumentException("unexpected argument " + arg);
                        }
                        dir = Path.of(arg);
                    }
                }
            }
            if (dir == null || hosts.isEmpty()) {
                throw new IllegalArgumentException("DIR and --host NAME are required");
            }
        } catch (IllegalArgumentException e) {
            err.println("ferry certs: " + e.getMessage());
            err.print(HELP);
            return 2;
        }
        try {
            List<Path> made = CertificateMaker.make(dir, new CertificateMaker.Request(hosts,
                    clientDn == null ? "CN=" + hosts.getFirst() : clientDn, days, ca));
            for (Path file : made) {
                out.println("made " + file);
            }
            String identity = DistinguishedName.text(PemFiles.certificates(dir.resolve(TlsCredentials.CLIENT_CERT)).getFirst());
            out.println("client certificate subject (for authz-simple,identity=, commas doubled on the command line): " + identity);
            out.println("use: -object tls-creds-x509,id=tls0,dir=" + dir.toAbsolutePath() + ",endpoint=server  (destination)");
            out.println("     -object tls-creds-x509,id=tls0,dir=" + dir.toAbsolutePath() + ",endpoint=client  (source)");
            return 0;
        } catch (IllegalArgumentException e) {
            err.println("ferry certs: " + e.getMessage());
            return 2;
        } catch (Exception e) {
            err.println("ferry certs: " + e.getMessage());
            return 1;
        }
    }

    private static String value(List<String> args, int index, String option) {
        if (index >= args.size()) {
            throw new IllegalArgumentException(option + " needs a value");
        }
        return args.get(index);
    }

    private static int days(String text) {
        try {
            int days = Integer.parseInt(text);
            if (days >= 1 && days <= 36500) {
                return days;
            }
        } catch (NumberFormatException e) {
            // below
        }
        throw new IllegalArgumentException("--days " + text + ": a number of days from 1 to 36500");
    }
}
