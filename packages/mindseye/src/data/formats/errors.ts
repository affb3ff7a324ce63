// Bad input never stops a long run silently nor kills it for one bad line: a malformed record
// (or a corrupt image) is skipped, counted and remembered with its file and record; past a
// configurable error rate the run stops with a message that says how many were bad and where.
// A problem with a whole file (not JSON, a column missing) is a DataFormatError at once.

/** Where a record came from: the file and the record inside it ("line 812", "key 000010005", "row 3"). */
export interface RecordSource {
  readonly file: string;
  readonly record: string;
}

/** A file that cannot be read as the format it should be in: names the file, says what to do. */
export class DataFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DataFormatError";
  }
}

/** Thrown by record parsers; the reader catches it and counts a skip. */
export class MalformedRecord extends Error {
  constructor(readonly source: RecordSource, readonly reason: string) {
    super(`${source.file} ${source.record}: ${reason}`);
    this.name = "MalformedRecord";
  }
}

/** Too many bad records: the run stops. */
export class ErrorRateExceeded extends DataFormatError {
  constructor(message: string, readonly report: SkipReport) {
    super(message);
    this.name = "ErrorRateExceeded";
  }
}

export interface ErrorPolicy {
  /**
   * The run stops when skipped / records exceeds this fraction (0.01 = 1%). The rate is judged on
   * the whole input (`finish`), so where the bad records sit does not matter; it stops earlier only
   * once the input's size is known and the rate is certain to be exceeded even if every remaining
   * record is good.
   */
  readonly maxErrorRate: number;
  /** How many skipped records the summary and error messages name (every one is kept in the report). */
  readonly keepExamples: number;
  /** Where a user sets maxErrorRate, for the message that stops a run. */
  readonly setting: string;
}

export const DEFAULT_ERROR_POLICY: ErrorPolicy = Object.freeze({
  maxErrorRate: 0.01,
  keepExamples: 10,
  setting: "--max-error-rate (mindseye targets extract, mindseye eval) or the recipe key max_error_rate",
});

export interface SkippedRecord {
  readonly source: RecordSource;
  readonly reason: string;
}

export interface SkipReport {
  /** What was being read, e.g. "coco" or "images". */
  readonly what: string;
  /** Records seen: good + skipped. */
  readonly seen: number;
  readonly skipped: number;
  /** The first `keepExamples` skipped records, in order. */
  readonly examples: readonly SkippedRecord[];
  /** Every skipped record, in order. */
  readonly records: readonly SkippedRecord[];
  /** Records left out on purpose, not errors: "not downloaded" → 1200, "no image" → 3. */
  readonly omitted: Readonly<Record<string, number>>;
}

/**
 * Counts good and bad records of one input (share one counter across its files) and stops the
 * run when the error rate over the whole input is past the policy's: at `finish()`, or as soon as
 * it is certain when the caller knows the input's size (`expectTotal`).
 * ```ts
 * const errors = new SkipCounter("cc3m", { maxErrorRate: 0.01 });
 * for await (const pair of readCc3m(opts, { errors })) { ... }
 * errors.finish(); // throws ErrorRateExceeded past 1% over the whole file
 * console.log(errors.summary());
 * ```
 */
export class SkipCounter {
  readonly policy: ErrorPolicy;
  private good = 0;
  private bad = 0;
  private total: number | null = null;
  private readonly skippedRecords: SkippedRecord[] = [];
  private readonly omittedCounts: Record<string, number> = {};

  constructor(readonly what: string, policy: Partial<ErrorPolicy> = {}) {
    const p = { ...DEFAULT_ERROR_POLICY, ...policy };
    if (!(p.maxErrorRate >= 0 && p.maxErrorRate <= 1)) throw new RangeError(`maxErrorRate must be in [0, 1], got ${p.maxErrorRate}`);
    if (!(Number.isInteger(p.keepExamples) && p.keepExamples >= 0)) throw new RangeError(`keepExamples must be a non-negative integer, got ${p.keepExamples}`);
    this.policy = Object.freeze(p);
  }

  /**
   * The input holds at most `n` records in all: from now on the run stops as soon as the skips
   * alone exceed the rate over n, whatever the rest holds.
   */
  expectTotal(n: number): void {
    if (!(Number.isInteger(n) && n >= 0)) throw new RangeError(`expectTotal: n must be a non-negative integer, got ${n}`);
    this.total = n;
    this.checkCertain();
  }

  /** One good record. */
  ok(): void {
    this.good++;
  }

  /** One malformed record, skipped. Throws ErrorRateExceeded once the rate is certain to be past the policy. */
  skip(source: RecordSource, reason: string): void {
    this.bad++;
    this.skippedRecords.push({ source, reason });
    this.checkCertain();
  }

  /** Records an earlier, interrupted run of the same input already counted (a resumed run). */
  carry(good: number, skipped: readonly SkippedRecord[]): void {
    if (!(Number.isInteger(good) && good >= 0)) throw new RangeError(`carry: good must be a non-negative integer, got ${good}`);
    this.good += good;
    this.bad += skipped.length;
    this.skippedRecords.push(...skipped);
    this.checkCertain();
  }

  /** A record left out on purpose (a failed download, a problem without an image): counted, not an error. */
  omit(why: string, n = 1): void {
    this.omittedCounts[why] = (this.omittedCounts[why] ?? 0) + n;
  }

  /**
   * The input has been read: judges the error rate over all of it (ErrorRateExceeded past the
   * policy) and returns the report.
   */
  finish(): SkipReport {
    if (this.bad > 0 && this.bad / this.seen > this.policy.maxErrorRate) throw this.exceeded(this.seen, false);
    return this.report();
  }

  get seen(): number {
    return this.good + this.bad;
  }

  get skipped(): number {
    return this.bad;
  }

  /** The skipped records from the `from`-th on (0-based), e.g. those of the current batch. */
  skippedSince(from: number): SkippedRecord[] {
    return this.skippedRecords.slice(from);
  }

  report(): SkipReport {
    return {
      what: this.what, seen: this.seen, skipped: this.bad, examples: this.skippedRecords.slice(0, this.policy.keepExamples),
      records: [...this.skippedRecords], omitted: { ...this.omittedCounts },
    };
  }

  /** One paragraph for logs: counts, rate, the first skipped records. */
  summary(): string {
    const head = `${this.what}: ${this.bad} of ${this.seen} records skipped (${percent(this.bad, this.seen)})`;
    const omitted = Object.entries(this.omittedCounts).map(([k, n]) => `${n} ${k}`);
    const lines = [omitted.length > 0 ? `${head}; left out: ${omitted.join(", ")}` : head];
    const shown = this.skippedRecords.slice(0, this.policy.keepExamples);
    for (const e of shown) lines.push(`  ${e.source.file} ${e.source.record}: ${e.reason}`);
    if (this.bad > shown.length) lines.push(`  … and ${this.bad - shown.length} more`);
    return lines.join("\n");
  }

  /** Stops now if the skips so far exceed the rate over the known total (certain whatever comes next). */
  private checkCertain(): void {
    if (this.total === null) return;
    const total = Math.max(this.total, this.seen);
    if (this.bad / total > this.policy.maxErrorRate) throw this.exceeded(total, true);
  }

  private exceeded(total: number, early: boolean): ErrorRateExceeded {
    const shown = this.skippedRecords.slice(0, this.policy.keepExamples);
    const where = shown.map((e) => `\n  ${e.source.file} ${e.source.record}: ${e.reason}`).join("") + (this.bad > shown.length ? `\n  … and ${this.bad - shown.length} more` : "");
    const counts = early
      ? `${this.bad} of its ${total} records are malformed (${percent(this.bad, total)} even if the ${total - this.seen} not yet read are all good)`
      : `${this.bad} of ${total} records were malformed (${percent(this.bad, total)})`;
    return new ErrorRateExceeded(
      `stopped reading ${this.what}: ${counts}, above the maximum error rate ${percent(this.policy.maxErrorRate, 1)}. ` +
        `Skipped:${where}\nFix or remove those records, or allow a higher rate with ${this.policy.setting}.`,
      this.report(),
    );
  }
}

function percent(n: number, d: number): string {
  return d === 0 ? "0%" : `${+((100 * n) / d).toFixed(2)}%`;
}

/** The message of an unknown thrown value. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Options every reader takes. */
export interface ReadOptions {
  /**
   * Counts skipped records. Pass one to read its report afterwards or to share it across several
   * readers of one dataset, and judge it with `finish()` when the input is read; without one, a
   * read through the registry (readPairs, readTasks) makes its own with DEFAULT_ERROR_POLICY and
   * judges it when it reaches the end.
   */
  readonly errors?: SkipCounter;
}

/** The counter a reader uses: the caller's, or a fresh one with the default policy. */
export function counterFor(what: string, options: ReadOptions | undefined): SkipCounter {
  return options?.errors ?? new SkipCounter(what);
}

/**
 * Runs one record's parser: its result counts as a good record; a MalformedRecord it throws is
 * counted as a skip (→ null); `build` returns null itself for a record left out on purpose
 * (after `errors.omit`). Any other error propagates, as does ErrorRateExceeded.
 */
export async function attempt<T>(errors: SkipCounter, build: () => T | null | Promise<T | null>): Promise<T | null> {
  let value: T | null;
  try {
    value = await build();
  } catch (e) {
    if (!(e instanceof MalformedRecord)) throw e;
    errors.skip(e.source, e.reason);
    return null;
  }
  if (value !== null) errors.ok();
  return value;
}
