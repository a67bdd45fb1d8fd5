package bigdlrs.spark;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/**
 * The state of a distributed training between stages: iterations done, the
 * model (native format) and each rank's state (its weight shard and optimizer
 * state; null before the first stage). On disk: {@code BDLC}, version 1,
 * iterations done, the model and each rank's state as length-prefixed bytes
 * (big-endian). The parts carry their own checksums.
 */
final class Checkpoint implements Serializable {
    private static final long serialVersionUID = 1L;
    private static final int MAGIC = 0x42444c43; // "BDLC"

    final long done;
    final byte[] model;
    final byte[][] states;

    Checkpoint(long done, byte[] model, byte[][] states) {
        this.done = done;
        this.model = model;
        this.states = states;
    }

    /**
     * Writes to a temporary file beside {@code file}, flushed to disk, then
     * renames it over.
     */
    void write(Path file) {
        try {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            DataOutputStream out = new DataOutputStream(bytes);
            out.writeInt(MAGIC);
            out.writeInt(1);
            out.writeLong(done);
            out.writeInt(model.length);
            out.write(model);
            out.writeInt(states.length);
            for (byte[] s : states) {
                out.writeInt(s.length);
                out.write(s);
            }
            Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE,
                                                   StandardOpenOption.WRITE,
                                                   StandardOpenOption.TRUNCATE_EXISTING)) {
                ByteBuffer b = ByteBuffer.wrap(bytes.toByteArray());
                while (b.hasRemaining()) {
                    ch.write(b);
                }
                ch.force(true); // on disk before the rename makes it the checkpoint
            }
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING,
                       StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new UncheckedIOException("writing the checkpoint " + file, e);
        }
    }

    /** Reads {@code file}, which must hold the states of {@code ranks} ranks. */
    static Checkpoint read(Path file, int ranks) {
        try {
            ByteBuffer in = ByteBuffer.wrap(Files.readAllBytes(file));
            if (in.remaining() < 20 || in.getInt() != MAGIC || in.getInt() != 1) {
                throw new IllegalArgumentException(file + " is not a bigdl-rs Spark checkpoint");
            }
            long done = in.getLong();
            byte[] model = part(in, file);
            int n = in.remaining() >= 4 ? in.getInt() : -1;
            if (n != ranks) {
                throw new IllegalArgumentException(file + " holds the state of " + n
                    + " ranks, the training data has " + ranks + " partitions");
            }
            byte[][] states = new byte[n][];
            for (int r = 0; r < n; r++) {
                states[r] = part(in, file);
            }
            if (done < 0 || in.hasRemaining()) {
                throw new IllegalArgumentException(file + " is damaged");
            }
            return new Checkpoint(done, model, states);
        } catch (IOException e) {
            throw new UncheckedIOException("reading the checkpoint " + file, e);
        }
    }

    /** A length-prefixed part, bounded by the bytes that are there. */
    private static byte[] part(ByteBuffer in, Path file) {
        int len = in.remaining() >= 4 ? in.getInt() : -1;
        if (len < 0 || len > in.remaining()) {
            throw new IllegalArgumentException(file + " is truncated or damaged");
        }
        byte[] b = new byte[len];
        in.get(b);
        return b;
    }
}
