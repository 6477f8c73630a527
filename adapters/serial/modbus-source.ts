import modbusSerial from 'modbus-serial';
import type { ModbusRtuSource } from '../../runtime/config/sources/serial.js';
import { sleep } from '../../runtime/backoff.js';
import { errorMessage } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/log.js';
import type { InputRejectReason, Source, SourceContext, SourceState } from '../../runtime/pipeline/source.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { lineSettings, SerialLink } from './port.js';
import { decodeRegister, planReads, resolveRegisters, type ReadPlan } from './registers.js';
import { RtuPort } from './rtu-port.js';

export type ModbusRtuConfig = ModbusRtuSource;

// modbus-serial is CommonJS and sets module.exports.default to itself, which is what its types describe.
const ModbusRTU = modbusSerial.default;
type ModbusClient = InstanceType<typeof ModbusRTU>;

/** Polls in a row in which no device answered at all, after which the source says it is down. */
export const SILENT_POLLS_DOWN = 3;

interface ModbusFailure {
  reason: InputRejectReason;
  message: string;
}

/**
 * A Modbus RTU master: every pollIntervalMs it reads the configured holding and input registers
 * (grouped into as few requests as the addresses allow) and hands one batch of readings per poll
 * to the runtime. Answers with a bad CRC, no answer in time and exception answers are counted
 * (crc_error, timeout, device_error) and polling simply goes on; the port is re-opened when it
 * goes away. modbus-serial's ModbusRTU builds the requests and checks the answers.
 */
export class ModbusRtuPoller implements Source {
  readonly type = 'modbus-rtu';
  private readonly log: Logger;
  private readonly link: SerialLink;
  private readonly rtu: RtuPort;
  private readonly client: ModbusClient;
  private readonly plans: ReadPlan[];
  private readonly origin: string;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;
  private stopped = false;
  private silentPolls = 0;

  constructor(
    readonly name: string,
    private readonly config: ModbusRtuConfig,
    private readonly ctx: SourceContext,
  ) {
    this.log = ctx.log.child({ source: name, path: config.path });
    this.origin = config.path;
    this.plans = planReads(resolveRegisters(config), config.maxRegistersPerRead);
    this.link = new SerialLink({
      config,
      log: this.log,
      onData: (chunk) => this.rtu.received(chunk),
      onOpen: () => this.rtu.reset(),
      onReconnected: () => ctx.reconnected(),
    });
    this.rtu = new RtuPort(this.link);
    this.client = new ModbusRTU(this.rtu);
    this.client.setTimeout(config.timeoutMs);
    // RtuPort reports port trouble through the link, not as 'error'; never let one crash the daemon.
    this.client.on('error', (err) => this.log.debug({ err: errorMessage(err) }, 'Modbus client error'));
  }

  state(): SourceState {
    const s = this.link.state();
    return s === 'up' && this.silentPolls >= SILENT_POLLS_DOWN ? 'down' : s;
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.loop) return;
    this.stopped = false;
    this.abort = new AbortController();
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    await this.link.start(signal);
    if (this.stopped || signal.aborted) return;
    await new Promise<void>((resolve) => this.client.open(() => resolve()));
    this.log.info(
      { requests: this.plans.map(describePlan), pollIntervalMs: this.config.pollIntervalMs },
      'polling Modbus RTU registers',
    );
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    await this.loop;
    this.loop = undefined;
    await this.link.stop();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const began = Date.now();
      if (this.link.isOpen) {
        try {
          await this.poll();
        } catch (err) {
          // poll() guards each read and each register; this is the last line, so that a bug can
          // cost one poll but never end polling while state() still says 'up'.
          const message = `polling Modbus registers on ${this.config.path} failed unexpectedly: ${errorMessage(err)}; the next poll tries again`;
          this.log.error({ err: errorMessage(err) }, message);
          this.ctx.reject('malformed', message, this.origin);
        }
      }
      const left = this.config.pollIntervalMs - (Date.now() - began);
      await sleep(Math.max(left, 0), this.abort.signal);
    }
  }

  /**
   * One pass over every planned read; a failed read never keeps the others from being tried, and
   * readings decoded before the pass is cut short (the port went away) are still handed over.
   */
  private async poll(): Promise<void> {
    const batch: Reading[] = [];
    let answered = 0;
    let timedOut = 0;
    let current: ReadPlan | undefined;
    try {
      for (const plan of this.plans) {
        if (this.stopped || !this.link.isOpen) return;
        current = plan;
        const outcome = await this.read(plan, batch);
        if (outcome === 'port_gone') return; // the link says so and re-opens the port
        if (outcome === 'timeout') timedOut += 1;
        else answered += 1; // a bad answer is still an answer: something is on the line
      }
      this.noteAnswers(answered, timedOut);
    } catch (err) {
      // Not the device's doing that read() knows of (a bug, most likely): give up on the rest of
      // this poll, not on polling.
      const what = current ? `${describePlan(current)} on ${this.config.path}` : this.config.path;
      const message = `reading ${what} failed unexpectedly: ${errorMessage(err)}; the next poll tries again`;
      this.log.error({ err: errorMessage(err) }, message);
      this.ctx.reject('malformed', message, this.origin);
    } finally {
      if (batch.length > 0) this.ctx.readings(batch);
    }
  }

  /** One request: decodes its registers into `batch`, or counts why it failed. */
  private async read(plan: ReadPlan, batch: Reading[]): Promise<'answered' | 'timeout' | 'port_gone'> {
    let words: number[];
    try {
      this.client.setID(plan.unitId);
      const res =
        plan.table === 'holding'
          ? await this.client.readHoldingRegisters(plan.start, plan.count)
          : await this.client.readInputRegisters(plan.start, plan.count);
      words = res.data;
    } catch (err) {
      const failure = this.classify(err, plan);
      if (failure === undefined) return 'port_gone';
      this.ctx.reject(failure.reason, failure.message, this.origin);
      return failure.reason === 'timeout' ? 'timeout' : 'answered';
    }
    const receivedAt = Date.now();
    for (const r of plan.registers) {
      const where = `${r.asset}/${r.tag}: unit ${r.unitId} ${r.table} register ${r.address} (${r.type}) on ${this.config.path}`;
      let value: number;
      try {
        value = decodeRegister(words, r.address - plan.start, r);
      } catch (err) {
        // An answer shorter than the request asked for: the other registers of it may still be
        // fine. ctx.reject counts and logs it; a second log line here would only double that.
        const message = `${where}: cannot decode the answer to ${describePlan(plan)} (${errorMessage(err)})`;
        this.ctx.reject('malformed', message, this.origin);
        continue;
      }
      if (!Number.isFinite(value)) {
        this.ctx.reject('not_finite', `${where} holds ${value}`, this.origin);
        continue;
      }
      batch.push({
        source: this.name,
        asset: r.asset,
        tag: r.tag,
        value,
        quality: 'good',
        sourceTime: receivedAt,
        receivedAt,
      });
    }
    return 'answered';
  }

  private noteAnswers(answered: number, timedOut: number): void {
    if (answered > 0) {
      if (this.silentPolls >= SILENT_POLLS_DOWN) this.log.info('Modbus devices answer again');
      this.silentPolls = 0;
      return;
    }
    if (timedOut === 0) return;
    this.silentPolls += 1;
    if (this.silentPolls === SILENT_POLLS_DOWN) {
      this.log.warn(
        { settings: lineSettings(this.config) },
        `no Modbus device on ${this.config.path} answered ${SILENT_POLLS_DOWN} polls in a row; check the ` +
          'RS-485 wiring (A/B swapped?), the unit ids and that baud rate, parity and stop bits match the devices',
      );
    }
  }

  /** What a failed read means; undefined when the port is not open (not the device's doing). */
  private classify(err: unknown, plan: ReadPlan): ModbusFailure | undefined {
    const what = `reading ${plan.table} registers ${plan.start}..${plan.start + plan.count - 1} of unit ${plan.unitId}`;
    const e = err as { message?: unknown; errno?: unknown; modbusCode?: unknown; name?: unknown };
    const message = errorMessage(err);
    if (typeof e.modbusCode === 'number') {
      return {
        reason: 'device_error',
        message: `${what}: the device answered with ${message}; check the register map in the device manual`,
      };
    }
    if (e.errno === 'ETIMEDOUT') {
      return {
        reason: 'timeout',
        message: `${what}: no answer within ${this.config.timeoutMs} ms`,
      };
    }
    if (/CRC/i.test(message)) {
      return {
        reason: 'crc_error',
        message: `${what}: the answer failed its CRC check (electrical noise, a missing termination resistor, or two devices with the same unit id)`,
      };
    }
    if (e.name === 'PortNotOpenError' || message === 'Port Not Open') return undefined;
    return { reason: 'malformed', message: `${what}: unexpected answer: ${message}` };
  }
}

function describePlan(p: ReadPlan): string {
  return `unit ${p.unitId} ${p.table} ${p.start}..${p.start + p.count - 1}`;
}
