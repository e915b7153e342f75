// Watches certificate files for changes, the way Kubernetes and operators replace them:
//   - in-place writes and atomic renames (temp file + rename) in the file's directory;
//   - Kubernetes secret/configMap volumes, where `cert.pem -> ..data/cert.pem` and the kubelet
//     publishes a new version by renaming a new `..data -> ..2024_...` symlink over the old one;
//   - symlinks anywhere on the path (the resolved target's directory is watched too, and re-resolved
//     after every change).
// It watches directories (inotify via fs.watch), not files, so a replaced inode is never missed,
// debounces events per key (FILE_DEBOUNCE_DURATION), and rescans every `pollMs` as a safety net for
// watches that could not be set (missing directory) or were lost (directory removed). Callers get
// "something may have changed for <key>" and compare contents themselves.

import { watch, realpathSync, statSync, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { logger } from '../util/logger.js';
import { securityMetrics } from './metrics.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('cache');

export interface FileWatchOptions {
  readonly debounceMs: number;
  /** Rescan interval (0 = no rescans). */
  readonly pollMs: number;
  readonly onChange: (key: string) => void;
}

interface Entry {
  readonly files: readonly string[];
  dirs: Set<string>;
  fingerprint: string;
  timer?: NodeJS.Timeout;
}

function fingerprintOf(files: readonly string[]): string {
  return files
    .map((f) => {
      try {
        const real = realpathSync(f);
        const st = statSync(real);
        return `${real}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
      } catch {
        return `${f}:missing`;
      }
    })
    .join('|');
}

/** Directories whose events can change what `file` reads: its own, and its resolved target's. */
function dirsOf(file: string): Set<string> {
  const dirs = new Set([dirname(file)]);
  try {
    dirs.add(dirname(realpathSync(file)));
  } catch {
    // not there (yet): the poll picks it up
  }
  return dirs;
}

export class FileWatchSet {
  private readonly entries = new Map<string, Entry>();
  private readonly watchers = new Map<string, FSWatcher>();
  /** directory -> the keys whose files it holds: adding, dropping or waking an entry touches only its own directories. */
  private readonly dirKeys = new Map<string, Set<string>>();
  private poller: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: FileWatchOptions) {}

  /** Starts (or keeps) watching `files` for `key`. */
  watch(key: string, files: readonly string[]): void {
    if (this.closed) return;
    const abs = files.map((f) => resolve(f));
    const existing = this.entries.get(key);
    if (existing && existing.files.join('\0') === abs.join('\0')) return;
    if (existing) this.unwatch(key);
    const entry: Entry = { files: abs, dirs: new Set(), fingerprint: fingerprintOf(abs) };
    this.entries.set(key, entry);
    this.refreshDirs(key, entry);
    if (!this.poller && this.options.pollMs > 0) {
      this.poller = setInterval(() => this.poll(), timerDelay(this.options.pollMs));
      this.poller.unref();
    }
  }

  unwatch(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    if (entry.timer) clearTimeout(entry.timer);
    this.entries.delete(key);
    this.setDirs(key, entry, new Set());
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) if (e.timer) clearTimeout(e.timer);
    this.entries.clear();
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    this.dirKeys.clear();
    if (this.poller) clearInterval(this.poller);
    this.poller = undefined;
  }

  private refreshDirs(key: string, entry: Entry): void {
    const dirs = new Set<string>();
    for (const f of entry.files) for (const d of dirsOf(f)) dirs.add(d);
    this.setDirs(key, entry, dirs);
    for (const d of dirs) this.ensureWatcher(d);
  }

  /** Gives `entry` the directories `dirs`, closing the watch of a directory no entry needs any more. */
  private setDirs(key: string, entry: Entry, dirs: Set<string>): void {
    for (const d of dirs) {
      let keys = this.dirKeys.get(d);
      if (!keys) this.dirKeys.set(d, (keys = new Set()));
      keys.add(key);
    }
    for (const d of entry.dirs) {
      if (dirs.has(d)) continue;
      const keys = this.dirKeys.get(d);
      keys?.delete(key);
      if (keys?.size) continue;
      this.dirKeys.delete(d);
      this.watchers.get(d)?.close();
      this.watchers.delete(d);
    }
    entry.dirs = dirs;
  }

  private ensureWatcher(dir: string): void {
    if (this.watchers.has(dir)) return;
    try {
      const w = watch(dir, { persistent: false }, () => this.onDirEvent(dir));
      w.on('error', (err) => {
        log.debug(`watch of ${dir} ended: ${err.message}`);
        w.close();
        this.watchers.delete(dir);
        this.onDirEvent(dir); // the directory went away: the files may have too
      });
      this.watchers.set(dir, w);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') {
        securityMetrics.fileWatcherFailures.inc();
        log.error(`error adding watcher for directory ${dir}, retrying every ${this.options.pollMs}ms: ${(err as Error).message}`);
      }
    }
  }

  private onDirEvent(dir: string): void {
    for (const key of this.dirKeys.get(dir) ?? []) {
      const entry = this.entries.get(key);
      if (entry) this.schedule(key, entry);
    }
  }

  private schedule(key: string, entry: Entry): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (this.entries.get(key) !== entry) return;
      entry.fingerprint = fingerprintOf(entry.files);
      this.refreshDirs(key, entry); // a symlink may now point elsewhere
      this.options.onChange(key);
    }, timerDelay(this.options.debounceMs));
    entry.timer.unref();
  }

  private poll(): void {
    for (const [key, entry] of this.entries) {
      for (const d of entry.dirs) this.ensureWatcher(d);
      if (entry.timer) continue;
      const fp = fingerprintOf(entry.files);
      if (fp !== entry.fingerprint) {
        log.debug(`rescan found a change for ${key}`);
        this.schedule(key, entry);
      } else if (entry.files.some((f) => [...dirsOf(f)].some((d) => !entry.dirs.has(d)))) {
        this.refreshDirs(key, entry); // a path that did not resolve before does now
      }
    }
  }
}
