// Server-side apply of a Deployment's spec.strategy, revision after revision, as the API server
// does it: structured-merge-diff's Updater.Apply merges each rendered strategy into the live
// object for the field manager "helm" (Helm 4 applies server-side by default), then the API
// server's defaulting (SetDefaults_Deployment, pkg/apis/apps/v1/defaults.go) fills in what the
// render left out, owned by no manager, and its validation (ValidateDeploymentStrategy,
// pkg/apis/apps/validation/validation.go) refuses a Recreate strategy that still has a
// rollingUpdate; a refused revision leaves the live object as it was.
//
// Input on stdin: a JSON array, one rendered spec.strategy per revision (null: none rendered).
// Output on stdout: a JSON array, one {"merged": ..., "refused": ...} per revision.
// Used by tests/deploy/test_strategy_apply.py, built against Debian's
// golang-k8s-sigs-structured-merge-diff-dev.
package main

import (
	"encoding/json"
	"os"

	"sigs.k8s.io/structured-merge-diff/v4/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v4/merge"
	"sigs.k8s.io/structured-merge-diff/v4/typed"
	"sigs.k8s.io/structured-merge-diff/v4/value"
)

// The spec.strategy subtree of apps/v1 Deployment as the API server's OpenAPI gives it to
// structured-merge-diff: DeploymentStrategy and RollingUpdateDeployment are structs (granular maps
// of named fields, no x-kubernetes-map-type), maxSurge and maxUnavailable are IntOrString.
const schemaYAML = `types:
- name: deployment
  map:
    fields:
    - name: spec
      type: {namedType: spec}
- name: spec
  map:
    fields:
    - name: strategy
      type: {namedType: strategy}
- name: strategy
  map:
    fields:
    - name: type
      type: {scalar: string}
    - name: rollingUpdate
      type: {namedType: rollingUpdate}
- name: rollingUpdate
  map:
    fields:
    - name: maxSurge
      type: {namedType: intOrString}
    - name: maxUnavailable
      type: {namedType: intOrString}
- name: intOrString
  scalar: untyped
`

type sameVersion struct{}

func (sameVersion) Convert(v *typed.TypedValue, _ fieldpath.APIVersion) (*typed.TypedValue, error) {
	return v, nil
}
func (sameVersion) IsMissingVersionError(error) bool { return false }

type result struct {
	Merged  interface{} `json:"merged"`
	Refused bool        `json:"refused"`
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func toMap(tv *typed.TypedValue) map[string]interface{} {
	raw, err := value.ToJSON(tv.AsValue())
	must(err)
	out := map[string]interface{}{}
	must(json.Unmarshal(raw, &out))
	return out
}

func strategyOf(obj map[string]interface{}) map[string]interface{} {
	spec, _ := obj["spec"].(map[string]interface{})
	if spec == nil {
		return nil
	}
	strategy, _ := spec["strategy"].(map[string]interface{})
	return strategy
}

// defaulted is SetDefaults_Deployment's part for the strategy: type RollingUpdate when unset,
// and with RollingUpdate, maxSurge and maxUnavailable 25% where unset.
func defaulted(obj map[string]interface{}) map[string]interface{} {
	spec, _ := obj["spec"].(map[string]interface{})
	if spec == nil {
		spec = map[string]interface{}{}
		obj["spec"] = spec
	}
	strategy, _ := spec["strategy"].(map[string]interface{})
	if strategy == nil {
		strategy = map[string]interface{}{}
		spec["strategy"] = strategy
	}
	if t, _ := strategy["type"].(string); t == "" {
		strategy["type"] = "RollingUpdate"
	}
	if strategy["type"] == "RollingUpdate" {
		ru, _ := strategy["rollingUpdate"].(map[string]interface{})
		if ru == nil {
			ru = map[string]interface{}{}
			strategy["rollingUpdate"] = ru
		}
		for _, f := range []string{"maxSurge", "maxUnavailable"} {
			if ru[f] == nil {
				ru[f] = "25%"
			}
		}
	}
	return obj
}

func main() {
	var revisions []interface{}
	must(json.NewDecoder(os.Stdin).Decode(&revisions))
	parser, err := typed.NewParser(typed.YAMLObject(schemaYAML))
	must(err)
	deployment := parser.Type("deployment")
	updater := &merge.Updater{Converter: sameVersion{}}
	live, err := deployment.FromUnstructured(map[string]interface{}{})
	must(err)
	managers := fieldpath.ManagedFields{}
	results := []result{}
	for _, rendered := range revisions {
		config := map[string]interface{}{"spec": map[string]interface{}{}}
		if rendered != nil {
			config["spec"] = map[string]interface{}{"strategy": rendered}
		}
		configTyped, err := deployment.FromUnstructured(config)
		must(err)
		merged, newManagers, err := updater.Apply(live, configTyped, "apps/v1", managers, "helm", false)
		must(err)
		if merged == nil {
			merged = live // the merge changed no value: Apply says so with nil
		}
		obj := toMap(merged)
		strategy := strategyOf(obj)
		refused := strategy != nil && strategy["type"] == "Recreate" && strategy["rollingUpdate"] != nil
		results = append(results, result{Merged: strategy, Refused: refused})
		if refused {
			continue
		}
		live, err = deployment.FromUnstructured(defaulted(obj))
		must(err)
		managers = newManagers
	}
	must(json.NewEncoder(os.Stdout).Encode(results))
}
