"""Outputs: every file amygdala writes appears whole or not at all, a set of files (vectors + manifest,
an examples folder) changes as one set, and a failure names the user's path and the fix, never an internal name.

The guarantees, and how they are kept:

- **One file** (``atomic_write_bytes``): written to a temp file beside the target, fsynced, renamed over it.
  Readers see the old bytes or the new ones. A replaced file keeps its mode (and, as root, its owner); a new one
  gets 0666 minus the umask.
- **A set of files** (``publish_files``), e.g. ``readout.safetensors`` + ``readout.json``:

  1. every target is checked first (a folder in the way, a parent that is a file, an unwritable or read-only
     folder, an immutable or append-only file, two targets that are one file): one ``OutputError`` lists them
     all and nothing is written;
  2. the new bytes go to fsynced temp files beside their targets;
  3. a journal ``.<anchor>.publish`` (beside the anchor, by default the first target) records the set, and each
     existing target gets a hard-link backup (an immutable file refuses the link: nothing has changed yet);
  4. the temp files are renamed over their targets in order (a ``None`` target is removed);
  5. the journal is removed (the commit point), then the backups.

  If a rename fails (step 4), every target already renamed is put back from its backup before ``OutputError`` is
  raised: the complete old set remains. A crash (SIGKILL, power loss) between steps 3 and 5 leaves the journal;
  ``recover_interrupted`` (run by the next publish to the same anchor, and by ``load_artifact``) then restores
  the complete old set. Readers that open the files during the few renames of step 4 may see a mixed set; the
  artifact loader refuses one (the manifest records the vectors' sha256), and recovers when a journal is left.
- **Concurrent runs** (``output_lock``): an ``flock`` on ``.<name>.lock`` beside the output. A second run into
  the same output is refused at once, naming the holder's pid; a publish waits a while for it. The lock is
  re-entrant within a process and its file is removed on release.
"""
