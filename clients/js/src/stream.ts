// Where a client is in one channel's stream, and which publications it still owes the app.
//
// Pure bookkeeping, no I/O: for each publication, new (deliver), a repeat (drop) or past a
// gap (fill from `history` first). Publications are numbered by `offset` within an `epoch`;
// across epochs (a server that lost its history) only the `id` tells a repeat, so the ids
// recently delivered are kept, at most `maxSeen`. Publications arriving while the stream is
// caught up are held, at most `maxHeld`; past that they are dropped and `heldOverflowed` tells
// the catch-up to read them from history.

/** The last publication delivered: what `since` asks the server to continue after. */
export interface Position {
  offset: number;
  epoch: string;
}

/** The fields of a publication the bookkeeping reads. */
export interface Positioned {
  id: string;
  offset: number;
  epoch: string;
}

export const SEEN_IDS_KEPT = 2000;
export const HELD_KEPT = 10000;

export class ChannelStream<P extends Positioned = Positioned> {
  position: Position | null;
  heldOverflowed = false;
  private readonly seen = new Map<string, true>();
  private held: P[] | null = null;

  constructor(position: Position | null = null, readonly maxSeen = SEEN_IDS_KEPT,
              readonly maxHeld = HELD_KEPT) {
    this.position = position;
  }

  isDuplicate(pub: P): boolean {
    const pos = this.position;
    if (pos && pub.epoch === pos.epoch && pub.offset <= pos.offset) return true;
    return this.seen.has(pub.id);
  }

  /** True when publications between the position and `pub` were never delivered. */
  isGap(pub: P): boolean {
    const pos = this.position;
    return pos !== null && pub.epoch === pos.epoch && pub.offset > pos.offset + 1;
  }

  /** Record `pub` as delivered and move the position; false for a repeat.
   *  `anyEpoch`: history read after a failed recovery, where only the id tells a repeat. */
  accept(pub: P, anyEpoch = false): boolean {
    if (anyEpoch ? this.seen.has(pub.id) : this.isDuplicate(pub)) return false;
    this.remember(pub.id);
    this.advance(pub.offset, pub.epoch);
    return true;
  }

  /** Move forward (a new epoch replaces the old position whatever its offset). */
  advance(offset: number, epoch: string): void {
    const pos = this.position;
    if (!pos || pos.epoch !== epoch || offset > pos.offset) this.position = { offset, epoch };
  }

  get seenCount(): number {
    return this.seen.size;
  }

  private remember(id: string): void {
    if (typeof id !== "string") return;
    this.seen.delete(id);
    this.seen.set(id, true);
    while (this.seen.size > this.maxSeen) {
      const oldest = this.seen.keys().next().value as string;
      this.seen.delete(oldest);
    }
  }

  get holding(): boolean {
    return this.held !== null;
  }

  startHolding(): void {
    if (this.held === null) {
      this.held = [];
      this.heldOverflowed = false;
    }
  }

  hold(pub: P): void {
    if (this.held === null) throw new Error("not holding");
    if (this.held.length >= this.maxHeld) {
      this.heldOverflowed = true; // the catch-up reads the rest from history
      return;
    }
    this.held.push(pub);
  }

  get heldCount(): number {
    return this.held?.length ?? 0;
  }

  /** Stop holding; the held publications, current epoch first, in offset order. */
  release(): P[] {
    const held = this.held ?? [];
    this.held = null;
    const epoch = this.position?.epoch;
    return held.sort((a, b) => (Number(a.epoch !== epoch) - Number(b.epoch !== epoch))
      || a.offset - b.offset);
  }
}
