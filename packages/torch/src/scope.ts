// Ownership of native tensors. JavaScript's garbage collector does not see native memory, so
// every tensor created inside torch.scope(fn) is freed when fn returns, except what fn returns
// or keeps; those move to the enclosing scope (or become unowned at the top level).

export interface Owned {
  dispose(): void;
  readonly disposed: boolean;
}

interface Frame {
  owned: Owned[];
  kept: Set<Owned>;
}

const stack: Frame[] = [];

/** Called by every new Tensor: the innermost scope (if any) now owns it. */
export function track(t: Owned): void {
  const top = stack[stack.length - 1];
  if (top !== undefined) top.owned.push(t);
}

/**
 * Takes `t` out of every enclosing scope: no scope frees it, and its owner must dispose() it.
 * For long-lived tensors that may first be made deep inside scopes (a cache's lazily loaded shards).
 */
export function persist<T extends Owned>(t: T): T {
  for (const frame of stack) {
    const i = frame.owned.indexOf(t);
    if (i >= 0) frame.owned.splice(i, 1);
    frame.kept.delete(t);
  }
  return t;
}

/** Removes `t` from the current scope so it outlives it; it moves to the enclosing scope. */
export function keep<T extends Owned>(t: T): T {
  const top = stack[stack.length - 1];
  if (top !== undefined) top.kept.add(t);
  return t;
}

function collect(value: unknown, out: Set<Owned>, depth: number): void {
  if (value === null || typeof value !== "object" || depth > 4) return;
  if (isOwned(value)) {
    out.add(value);
  } else if (Array.isArray(value)) {
    for (const v of value) collect(v, out, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, out, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, depth + 1);
  }
}

let isOwned: (v: object) => v is Owned & object = (_v): _v is Owned & object => false;
/** Registers how to recognise an owned value (the Tensor class). */
export function setOwnedPredicate(p: (v: object) => v is Owned & object): void {
  isOwned = p;
}

/**
 * Runs fn and frees every tensor it created except those it returns (directly, or inside
 * arrays, Maps and plain objects) or passed to torch.keep.
 *
 * ```ts
 * const loss = torch.scope(() => model.forward(batch).loss); // intermediates freed here
 * ```
 */
export function scope<R>(fn: () => R): R {
  const frame: Frame = { owned: [], kept: new Set() };
  stack.push(frame);
  let result: R;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    for (const t of frame.owned) if (!frame.kept.has(t)) t.dispose();
    moveToParent(frame.kept);
    throw e;
  }
  stack.pop();
  if (result instanceof Promise) {
    throw new Error("torch.scope(fn): fn returned a Promise; scopes are synchronous — await inside, then scope the synchronous part");
  }
  const survivors = frame.kept;
  collect(result, survivors, 0);
  for (const t of frame.owned) if (!survivors.has(t)) t.dispose();
  moveToParent(survivors);
  return result;
}

function moveToParent(survivors: Set<Owned>): void {
  const parent = stack[stack.length - 1];
  if (parent === undefined) return;
  for (const t of survivors) if (!t.disposed) parent.owned.push(t);
}

/** Scope depth (0 outside any scope); for tests and diagnostics. */
export function scopeDepth(): number {
  return stack.length;
}
