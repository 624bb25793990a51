//! Prints the StreamJob CustomResourceDefinition as YAML (the content of `crds/streamjob.yaml`).

fn main() {
    print!("{}", weir_crds::crd_yaml());
}
