/**
 * Vigil's MQTT topic layout (a public contract: docs/CONTRACTS.md, with a JSON Schema for each
 * message in docs/schemas/):
 *   <prefix>/<device>/alerts/<kind>      QoS 1, not retained
 *   <prefix>/<device>/status             QoS 1, retained; the last will is the same JSON with
 *                                        state "offline"
 *   <prefix>/<device>/results/<pipeline> optional stream of every result
 *   <prefix>/<device>/rollout/<model>    QoS 1, retained: the model's latest rollout event
 */

/** One topic level: '/', '+', '#' and NUL would change the topic's structure, so they become '_'. */
export function topicLevel(value: string): string {
  const cleaned = value.replace(/[/+#]/g, '_').replaceAll(String.fromCharCode(0), '_');
  return cleaned.length > 0 ? cleaned : '_';
}

export interface Topics {
  alert(kind: string): string;
  status: string;
  result(pipeline: string): string;
  rollout(model: string): string;
}

export function topicsFor(prefix: string, deviceId: string): Topics {
  const base = `${prefix.replace(/\/+$/, '')}/${topicLevel(deviceId)}`;
  return {
    alert: (kind) => `${base}/alerts/${topicLevel(kind)}`,
    status: `${base}/status`,
    result: (pipeline) => `${base}/results/${topicLevel(pipeline)}`,
    rollout: (model) => `${base}/rollout/${topicLevel(model)}`,
  };
}
