package ferry.migration;

/**
 * The user cancelled the migration before COMMIT; the message is their reason. Thrown where the source's
 * thread handles the cancel request ({@link SourceEvents}) and caught at the top of the procedure
 * ({@link MigrationSource}), which resumes the source VM.
 */
final class Cancelled extends Exception {
    Cancelled(String reason) {
        super(reason);
    }
}
