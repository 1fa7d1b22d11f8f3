/**
 * Whether a workload consents to being restarted for a Secret: its pod template refers
 * to the Secret (a volume, a projected volume source, an env var, envFrom). Listing a
 * workload in spec.restartWorkloads is not enough: the author of an EnvelopeSecret may
 * have no right to patch the workload, and must not gain one through the controller.
 */
interface SecretRefs {
  volumes?: { secret?: { secretName?: string }; projected?: { sources?: { secret?: { name?: string } }[] } }[];
  containers?: Container[];
  initContainers?: Container[];
  ephemeralContainers?: Container[];
}

interface Container {
  env?: { valueFrom?: { secretKeyRef?: { name?: string } } }[];
  envFrom?: { secretRef?: { name?: string } }[];
}

export interface PodTemplateHolder {
  spec?: { template?: { spec?: SecretRefs } };
}

export function podTemplateUsesSecret(workload: PodTemplateHolder, secretName: string): boolean {
  const pod = workload.spec?.template?.spec;
  if (!pod) return false;
  for (const volume of pod.volumes ?? []) {
    if (volume.secret?.secretName === secretName) return true;
    if (volume.projected?.sources?.some((source) => source.secret?.name === secretName)) return true;
  }
  for (const container of [...(pod.containers ?? []), ...(pod.initContainers ?? []), ...(pod.ephemeralContainers ?? [])]) {
    if (container.env?.some((e) => e.valueFrom?.secretKeyRef?.name === secretName)) return true;
    if (container.envFrom?.some((e) => e.secretRef?.name === secretName)) return true;
  }
  return false;
}
