package ferry.tls;

import ferry.testkit.Tools;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

/**
 * Credentials for the tests, made with {@link CertificateMaker} (openssl): a good pair of directories
 * for host {@code localhost}/{@code 127.0.0.1}, and the bad ones each refusal needs.
 */
public final class TestPki {
    public static final String CLIENT_DN = "O=Ferry Tests,CN=source.test";
    /** Server and client credentials of one CA, for localhost and 127.0.0.1. */
    public final Path good;
    /** The same names, another CA. */
    public final Path otherCa;
    /** The good CA, certificates expired yesterday. */
    public final Path expired;
    /** The good CA, a server certificate for another host and a client with another DN. */
    public final Path otherHost;

    public TestPki(Path root) throws Exception {
        Tools.require("openssl");
        good = root.resolve("good");
        CertificateMaker.make(good, new CertificateMaker.Request(List.of("localhost", "127.0.0.1"), CLIENT_DN, 2, Optional.empty()));
        otherCa = root.resolve("other-ca");
        CertificateMaker.make(otherCa, new CertificateMaker.Request(List.of("localhost", "127.0.0.1"), CLIENT_DN, 2, Optional.empty()));
        expired = root.resolve("expired");
        CertificateMaker.make(expired, new CertificateMaker.Request(List.of("localhost", "127.0.0.1"), CLIENT_DN, -1, Optional.of(good)));
        otherHost = root.resolve("other-host");
        CertificateMaker.make(otherHost, new CertificateMaker.Request(List.of("elsewhere.test"), "O=Ferry Tests,CN=intruder.test", 2,
                Optional.of(good)));
    }

    public static TlsCredentials server(Path dir) throws TlsException {
        return TlsCredentials.load("tls0", dir, TlsEndpoint.SERVER, true, false);
    }

    public static TlsCredentials client(Path dir) throws TlsException {
        return TlsCredentials.load("tls0", dir, TlsEndpoint.CLIENT, true, false);
    }
}
