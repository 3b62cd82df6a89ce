package ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Instant;
import java.time.ZoneOffset;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import org.junit.jupiter.api.Test;

/** Ferry's log line: an ISO 8601 date, the level as FERRY_LOG names it, and numbers not grouped by locale. */
class LogsTest {

    @Test
    void shouldDateEachLineInIso8601AndNeverGroupNumbers() {
        java.util.Locale previous = java.util.Locale.getDefault();
        java.util.Locale.setDefault(java.util.Locale.US);               // where MessageFormat would print 6,489
        try {
            LogRecord record = new LogRecord(Level.INFO, "qemu exited: name={0} pid={1} code={2} {x}");
            record.setLoggerName("ferry.qemu.QemuProcess");
            record.setParameters(new Object[] {"vm1", 6489L, 0});
            record.setInstant(Instant.parse("2026-11-29T20:30:18.862Z"));
            assertEquals("2026-11-29T21:30:18.862+01:00 INFO QemuProcess: qemu exited: name=vm1 pid=6489 code=0 {x}"
                    + System.lineSeparator(), new Logs.Line(ZoneOffset.ofHours(1)).format(record));
        } finally {
            java.util.Locale.setDefault(previous);
        }
    }

    @Test
    void shouldNameLevelsAsFerryLogDoes() {
        LogRecord record = new LogRecord(Level.FINE, "bitmap swapped");
        record.setLoggerName("Plain");
        record.setInstant(Instant.parse("2026-01-02T03:04:05Z"));
        assertEquals("2026-01-02T03:04:05.000Z DEBUG Plain: bitmap swapped" + System.lineSeparator(),
                new Logs.Line(ZoneOffset.UTC).format(record));
        assertEquals(Level.FINE, Logs.level("DEBUG"));
        assertEquals(Level.WARNING, Logs.level("warn"));
    }
}
