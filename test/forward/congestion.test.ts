import { describe, expect, it } from 'vitest';
import { SendWindow } from '../../runtime/forward/congestion.js';

describe('SendWindow', () => {
  it('starts at the configured sizes and halves both at each timeout, never below 1', () => {
    const w = new SendWindow(8, 200);
    expect([w.messages, w.rows]).toEqual([8, 200]);
    w.timedOut();
    expect([w.messages, w.rows]).toEqual([4, 100]);
    for (let i = 0; i < 10; i++) w.timedOut();
    expect([w.messages, w.rows]).toEqual([1, 1]);
  });

  it('grows back by one message and a sixteenth of the rows per acknowledgement, up to the configuration', () => {
    const w = new SendWindow(8, 200);
    w.timedOut();
    w.timedOut();
    expect([w.messages, w.rows]).toEqual([2, 50]);
    w.acked();
    expect([w.messages, w.rows]).toEqual([3, 53]);
    for (let i = 0; i < 100; i++) w.acked();
    expect([w.messages, w.rows]).toEqual([8, 200]);

    const small = new SendWindow(1, 10);
    small.timedOut();
    expect(small.rows).toBe(5);
    small.acked();
    expect([small.messages, small.rows]).toEqual([1, 6]);
  });
});
