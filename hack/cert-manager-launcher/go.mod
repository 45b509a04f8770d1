// The launcher that hack/build-cert-manager.sh builds as cert-manager's controller. Its path
// sits under cert-manager's own so that Go lets it import the root module's internal packages
// (as upstream's controller-binary module does). The script builds a copy of this module,
// where it resolves the rest of the requirements and go.sum; the version required here must
// be CERT_MANAGER_VERSION of hack/versions.env.
module github.com/cert-manager/cert-manager/enclave-controller

go 1.26.0

require github.com/cert-manager/cert-manager v1.21.2
