package control

import (
	"errors"
	"net/http"
	"slices"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/tlscheck"
)

// handleTLSCheck judges the mesh TLS of Service ports on the model the
// translator reads: the stored resources and the registered workloads.
func (cp *controlPlane) handleTLSCheck(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns, name := q.Get("namespace"), q.Get("name")
	if name != "" && ns == "" {
		writeErrors(w, http.StatusBadRequest, "tls-check: a Service name needs its namespace")
		return
	}
	stored, amend, _ := cp.analysisInput()
	// Resources that cannot be converted are not in effect for the
	// translator either; the analyzer reports them.
	cfg := *stored.Model()
	cfg.Workloads = slices.Clone(cfg.Workloads)
	amend(&cfg)
	cfg.Sort()
	ports, err := tlscheck.Check(&cfg, model.NewIndex(&cfg), ns, name)
	var noService *tlscheck.NoServiceError
	if errors.As(err, &noService) {
		writeErrors(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, controlapi.TLSCheckResponse{Ports: ports})
}
