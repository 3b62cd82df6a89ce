package ferry.nbd;

import static ferry.nbd.NbdWire.*;

import ferry.tls.TlsChannel;
import ferry.tls.TlsCredentials;
import ferry.tls.TlsException;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.SocketChannel;
import java.util.List;
import java.util.Optional;

/**
 * The server side of the fixed newstyle handshake, as a loop over options until GO or EXPORT_NAME
 * (transmission starts), ABORT or end of stream (the client leaves). Oldstyle is never offered and a
 * client without FIXED_NEWSTYLE is refused by closing, since it could not parse error replies.
 *
 * <pre>
 *  S: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES     C: client flags
 *  C: option ... S: replies ...   (repeat)              C: GO -> S: INFO..., ACK -> transmission
 * </pre>
 * With TLS credentials the server is in the spec's FORCEDTLS mode (as qemu-nbd with --tls-creds):
 * <pre>
 *  C: any option but STARTTLS/ABORT -> S: REP_ERR_TLS_REQD    C: EXPORT_NAME -> S: closes (no error reply exists)
 *  C: STARTTLS (no data) -> S: ACK, then the TLS handshake; every later byte is TLS, options start afresh
 * </pre>
 * so nothing about the exports, and no export, is given out before the client has a certificate the
 * CA signed (verify-peer=on) and the session is encrypted. Runs on the connection's thread; owns no threads.
 */
final class Handshake {
    private static final System.Logger LOG = System.getLogger(Handshake.class.getName());

    /** What the options settled, for the transmission phase. */
    record Negotiated(NbdExport export, boolean structured, boolean blockStatus, int transmissionFlags) {}

    private static final int BASE_ALLOCATION_ID = 1;

    private final SocketChannel socket;
    private final List<NbdExport> exports;
    private final TlsCredentials tls;  // null: plaintext only, STARTTLS is unsupported
    private final String conn;
    private WireIn in;                 // the socket's, or the TLS channel's after STARTTLS
    private GatheringByteChannel out;
    private TlsChannel tlsChannel;     // set once STARTTLS succeeded
    private int tlsRefusals;           // options answered REP_ERR_TLS_REQD
    private final ByteBuffer option;   // holds one option's payload (at most MAX_OPTION_LENGTH)
    private final ByteBuffer reply;
    private boolean structured;
    private boolean noZeroes;
    private String metaExport;         // export named in the last SET_META_CONTEXT that selected base:allocation

    Handshake(WireIn in, SocketChannel socket, List<NbdExport> exports, TlsCredentials tls, String conn) {
        this.in = in;
        this.socket = socket;
        this.out = socket;
        this.exports = exports;
        this.tls = tls;
        this.conn = conn;
        this.option = ByteBuffer.allocateDirect(MAX_OPTION_LENGTH);
        this.reply = ByteBuffer.allocateDirect(MAX_OPTION_LENGTH + 64);
    }

    /** Runs the handshake; empty when the client ended it without choosing an export. */
    Optional<Negotiated> run() throws IOException {
        reply.clear();
        reply.putLong(NBDMAGIC).putLong(IHAVEOPT).putShort((short) (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
        send();
        ByteBuffer b = in.need(4, true);
        if (b == null) {
            return Optional.empty();
        }
        int clientFlags = b.getInt();
        if ((clientFlags & FLAG_C_FIXED_NEWSTYLE) == 0) {
            throw new NbdException(NbdException.Kind.PROTOCOL, "client is not fixed newstyle: flags=0x" + Integer.toHexString(clientFlags));
        }
        if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) != 0) {
            throw new NbdException(NbdException.Kind.PROTOCOL, "unknown client flags: flags=0x" + Integer.toHexString(clientFlags));
        }
        noZeroes = (clientFlags & FLAG_C_NO_ZEROES) != 0;
        for (int count = 0; ; count++) {
            if (count > 10_000) {   // a client that never settles is not a client
                throw new NbdException(NbdException.Kind.PROTOCOL, "too many options: count=" + count);
            }
            b = in.need(OPTION_HEADER_LENGTH, true);
            if (b == null) {
                return Optional.empty();
            }
            OptionHeader header = decodeOptionHeader(b);
            if (header.magic() != IHAVEOPT) {
                throw new NbdException(NbdException.Kind.PROTOCOL, "bad option magic: magic=0x" + Long.toHexString(header.magic()));
            }
            if (header.length() > MAX_OPTION_LENGTH) {
                in.skip(header.length());
                int opt = header.option();
                if (tlsPending() && opt == OPT_EXPORT_NAME) {
                    throw exportNameBeforeTls();
                }
                if (tlsPending() && opt != OPT_STARTTLS && opt != OPT_ABORT) {
                    refuseBeforeTls(opt);
                } else {
                    error(opt, REP_ERR_TOO_BIG, "option too long: length=" + header.length());
                }
                continue;
            }
            option.clear().limit((int) header.length());
            in.readFully(option);
            option.flip();
            Optional<Negotiated> done = handle(header.option());
            if (done != null) {
                return done;
            }
        }
    }

    /** The reader of the connection from here on: the TLS channel's after STARTTLS. */
    WireIn in() {
        return in;
    }

    /** The writer of the connection from here on: the TLS channel after STARTTLS, else the socket. */
    GatheringByteChannel out() {
        return out;
    }

    /** Ends the TLS session, if one was started (close_notify); the caller closes the socket. */
    void closeTls() throws IOException {
        if (tlsChannel != null) {
            tlsChannel.close();
        }
    }

    private static final String TLS_REQUIRED = "TLS required: send STARTTLS first";
    /**
     * Why a gnutls client (QEMU, libnbd) sends no certificate: it offers only one whose issuer is among
     * the CAs the server names, and gnutls 3.7 (QEMU 7.2, libnbd 1.14 on Debian 12) offers an RSA one
     * only when the CertificateRequest's signature_algorithms name rsa_pkcs1 schemes, which a TLS 1.3
     * server such as JSSE does not (RFC 8446 allows only RSA-PSS there).
     */
    static final String NO_CLIENT_CERTIFICATE_HINT = " (the client sent no certificate: it has none from a CA in ca-cert.pem,"
            + " or its key is RSA, which QEMU 7.2 and libnbd 1.14 do not offer to a TLS 1.3 server; use an ECDSA, Ed25519"
            + " or RSA-PSS client key, see docs/nbd-protocol.md)";

    private boolean tlsPending() {
        return tls != null && tlsChannel == null;
    }

    private static NbdException exportNameBeforeTls() {
        return new NbdException(NbdException.Kind.PROTOCOL, "EXPORT_NAME before STARTTLS: TLS is required, and the option has no error reply");
    }

    /** Null to go on with the next option, else the end of the handshake. */
    private Optional<Negotiated> handle(int opt) throws IOException {
        if (tlsPending()) {
            return beforeTls(opt);
        }
        switch (opt) {
            case OPT_EXPORT_NAME -> {
                NbdExport export = find(getBytes(option, option.remaining()));
                if (export == null) {   // the client cannot be told why: close, as the spec says
                    throw new NbdException(NbdException.Kind.PROTOCOL, "unknown export requested by EXPORT_NAME");
                }
                Negotiated n = negotiated(export);
                reply.clear();
                reply.putLong(export.image().size()).putShort((short) n.transmissionFlags());
                if (!noZeroes) {
                    reply.put(new byte[124]);
                }
                send();
                return Optional.of(n);
            }
            case OPT_ABORT -> {
                abort();
                return Optional.empty();
            }
            case OPT_LIST -> list(opt);
            case OPT_STRUCTURED_REPLY -> {
                if (option.hasRemaining()) {
                    error(opt, REP_ERR_INVALID, "STRUCTURED_REPLY with data");
                } else {
                    structured = true;
                    ack(opt);
                }
            }
            case OPT_INFO, OPT_GO -> {
                return info(opt);
            }
            case OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT -> metaContext(opt);
            case OPT_STARTTLS -> {
                if (tls == null) {
                    error(opt, REP_ERR_UNSUP, "TLS is not configured on this server");
                } else {
                    error(opt, REP_ERR_INVALID, "TLS already negotiated");
                }
            }
            default -> error(opt, REP_ERR_UNSUP, "unsupported option: " + nameOfOption(opt));
        }
        return null;
    }

    /** FORCEDTLS: before TLS, only STARTTLS and ABORT are served. */
    private Optional<Negotiated> beforeTls(int opt) throws IOException {
        switch (opt) {
            case OPT_STARTTLS -> {
                if (option.hasRemaining()) {
                    error(opt, REP_ERR_INVALID, "STARTTLS with data");
                } else {
                    startTls();
                }
            }
            case OPT_ABORT -> {
                abort();
                return Optional.empty();
            }
            case OPT_EXPORT_NAME -> throw exportNameBeforeTls();
            default -> refuseBeforeTls(opt);
        }
        return null;
    }

    private void refuseBeforeTls(int opt) throws IOException {
        tlsRefusals++;
        error(opt, REP_ERR_TLS_REQD, TLS_REQUIRED);
    }

    /** How many options were refused for want of TLS (for the connection's log line). */
    int tlsRefusals() {
        return tlsRefusals;
    }

    /**
     * ACK, then the TLS handshake on the same socket; from then on every option and all of the
     * transmission phase go through the TLS channel. A failed handshake ends the connection
     * (TlsException): after the ACK there is no going back to plaintext.
     */
    private void startTls() throws IOException {
        ack(OPT_STARTTLS);
        // Bytes behind STARTTLS that the client sent without waiting for the ACK can only be its ClientHello.
        TlsChannel channel = new TlsChannel(socket, tls.serverEngine(), in.takeBuffered());
        tlsChannel = channel;   // closed by closeTls() even if the handshake fails
        try {
            channel.handshake();
        } catch (TlsException e) {
            if (e.getMessage().contains("certificate_required")) {
                throw new TlsException(e.kind(), e.getMessage() + NO_CLIENT_CERTIFICATE_HINT, e);
            }
            throw e;
        }
        in = new WireIn(channel, in.capacity());
        out = channel;
        LOG.log(Level.INFO, () -> "nbd tls established: conn=" + conn + " " + channel.describe());
    }

    private void list(int opt) throws IOException {
        if (option.hasRemaining()) {
            error(opt, REP_ERR_INVALID, "LIST with data");
            return;
        }
        for (NbdExport export : exports) {
            reply.clear();
            int length = stringLength(export.name());
            encodeOptionReplyHeader(reply, opt, REP_SERVER, length);
            putString(reply, export.name());
            send();
        }
        ack(opt);
    }

    private Optional<Negotiated> info(int opt) throws IOException {
        String name = getString(option);
        if (name == null || option.remaining() < 2) {
            error(opt, REP_ERR_INVALID, "malformed " + nameOfOption(opt));
            return null;
        }
        int requests = Short.toUnsignedInt(option.getShort());
        if (option.remaining() != 2 * requests) {
            error(opt, REP_ERR_INVALID, "malformed " + nameOfOption(opt) + ": information requests do not match the length");
            return null;
        }
        boolean wantName = false;
        for (int i = 0; i < requests; i++) {
            wantName |= option.getShort() == INFO_NAME;
        }
        NbdExport export = find(name);
        if (export == null) {
            error(opt, REP_ERR_UNKNOWN, "unknown export: name=" + name);
            return null;
        }
        Negotiated n = negotiated(export);
        reply.clear();
        encodeOptionReplyHeader(reply, opt, REP_INFO, 12);
        reply.putShort((short) INFO_EXPORT).putLong(export.image().size()).putShort((short) n.transmissionFlags());
        // Sent whether asked or not: minimum 1 means any alignment is served.
        encodeOptionReplyHeader(reply, opt, REP_INFO, 14);
        reply.putShort((short) INFO_BLOCK_SIZE).putInt(1).putInt(PREFERRED_BLOCK_SIZE).putInt(MAX_PAYLOAD_LENGTH);
        if (wantName) {
            byte[] bytes = export.name().getBytes(java.nio.charset.StandardCharsets.UTF_8);
            encodeOptionReplyHeader(reply, opt, REP_INFO, 2 + bytes.length);
            reply.putShort((short) INFO_NAME).put(bytes);
        }
        encodeOptionReplyHeader(reply, opt, REP_ACK, 0);
        send();
        return opt == OPT_GO ? Optional.of(n) : null;
    }

    private void metaContext(int opt) throws IOException {
        boolean set = opt == OPT_SET_META_CONTEXT;
        String name = getString(option);
        if (name == null || option.remaining() < 4) {
            error(opt, REP_ERR_INVALID, "malformed " + nameOfOption(opt));
            return;
        }
        int queries = option.getInt();
        boolean match = false;
        for (int i = 0; i < queries; i++) {
            String query = getString(option);
            if (query == null) {
                error(opt, REP_ERR_INVALID, "malformed " + nameOfOption(opt) + ": query " + i);
                return;
            }
            match |= query.equals(META_BASE_ALLOCATION) || (!set && query.equals("base:"));
        }
        if (option.hasRemaining()) {
            error(opt, REP_ERR_INVALID, "malformed " + nameOfOption(opt) + ": trailing bytes");
            return;
        }
        if (set && !structured) {
            error(opt, REP_ERR_INVALID, "SET_META_CONTEXT before STRUCTURED_REPLY");
            return;
        }
        if (find(name) == null) {
            error(opt, REP_ERR_UNKNOWN, "unknown export: name=" + name);
            return;
        }
        match |= !set && queries == 0;   // LIST with no query lists every context
        if (set) {
            metaExport = match ? name : null;
        }
        if (match) {
            reply.clear();
            encodeOptionReplyHeader(reply, opt, REP_META_CONTEXT, 4 + META_BASE_ALLOCATION.length());
            reply.putInt(BASE_ALLOCATION_ID).put(META_BASE_ALLOCATION.getBytes(java.nio.charset.StandardCharsets.US_ASCII));
            send();
        }
        ack(opt);
    }

    private Negotiated negotiated(NbdExport export) {
        int flags = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_CAN_MULTI_CONN;
        if (export.readOnly()) {
            flags |= FLAG_READ_ONLY;
        } else {
            flags |= FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FAST_ZERO;
        }
        if (structured) {
            flags |= FLAG_SEND_DF;
        }
        boolean blockStatus = structured && metaExport != null && metaExport.equals(export.name())
                || structured && metaExport != null && find(metaExport) == export;
        return new Negotiated(export, structured, blockStatus, flags);
    }

    /** The export of that name; the empty name means the first export when none is called "". */
    private NbdExport find(String name) {
        for (NbdExport export : exports) {
            if (export.name().equals(name)) {
                return export;
            }
        }
        return name.isEmpty() && !exports.isEmpty() ? exports.get(0) : null;
    }

    /** ACKs ABORT; the client may hang up without reading it (qemu and libnbd do), which is no failure. */
    private void abort() {
        try {
            ack(OPT_ABORT);
        } catch (IOException e) {
            LOG.log(Level.DEBUG, () -> "ABORT not acknowledged: conn=" + conn + ": " + e.getMessage());
        }
    }

    private void ack(int opt) throws IOException {
        reply.clear();
        encodeOptionReplyHeader(reply, opt, REP_ACK, 0);
        send();
    }

    private void error(int opt, int type, String message) throws IOException {
        byte[] bytes = message.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        reply.clear();
        encodeOptionReplyHeader(reply, opt, type, bytes.length);
        reply.put(bytes);
        send();
    }

    private void send() throws IOException {
        reply.flip();
        while (reply.hasRemaining()) {
            out.write(reply);
        }
    }
}
