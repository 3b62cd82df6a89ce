package ferry.migration;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A resume journal that cannot be used: damaged, of another format version, not a regular file, or
 * not matching the other disks' journals. The message is one line that names the journal and says
 * what to do (usually: remove it and migrate without {@code -r}).
 */
public final class JournalException extends IOException {
    private final Path journal;

    public JournalException(Path journal, String message) {
        super(message);
        this.journal = journal;
    }

    public JournalException(Path journal, String message, Throwable cause) {
        super(message, cause);
        this.journal = journal;
    }

    /** The journal file the message is about (the first one, when it names several). */
    public Path journal() {
        return journal;
    }
}
