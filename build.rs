fn main() {
    minijinja_embed::embed_templates!("templates");
    println!("cargo:rerun-if-changed=static");
}
