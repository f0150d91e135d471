"""A local Kubernetes control plane whose pods really serve, for tests and the demo.

Real upstream binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
kwok) run as processes on loopback; the process runner starts the real litellm proxy for
each proxy pod. Nothing here is imported by the operator.
"""
